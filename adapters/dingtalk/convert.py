"""Pure conversions: a DingTalk bot message -> Inbound, an Answer -> DingTalk markdown."""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from dingtalk_stream import ChatbotMessage

from adapters.markdown import to_dingtalk
from engine import clean
from engine.catalog import both, phrase
from engine.messages import (
    Answer,
    Attachment,
    ChatType,
    EscalationNotice,
    Fetch,
    Inbound,
    Outcome,
    Sender,
)
from engine.text import clip
from engine.threads.escalation import trigger_labels

PLATFORM = "dingtalk"
_ATTACHMENT_KINDS = {"picture": "image", "file": "file", "audio": "audio", "video": "video"}
_LEADING_MENTION = re.compile(r"^(\s*@\S+\s+)+")
_NUMBERS = ("sessionWebhookExpiredTime", "createAt")


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where the answer to one message goes: the session webhook while valid, else the OpenAPI."""

    conversation_id: str
    group: bool
    staff_id: str
    nick: str
    session_webhook: str = ""
    webhook_expires_ms: int = 0
    message: ChatbotMessage | None = None  # the SDK's own type, for its session-webhook reply

    def webhook_valid(self, now_ms: int, margin_ms: int = 10_000) -> bool:
        return bool(self.session_webhook) and now_ms + margin_ms < self.webhook_expires_ms


def parse(data: Mapping[str, Any]) -> ChatbotMessage:
    """The SDK's ChatbotMessage for a callback's data (raises on a malformed payload)."""
    fields = dict(data)
    for name in _NUMBERS:  # the SDK calls int() on some: a nonsense value is dropped, not fatal
        if name in fields:
            value = clean.number(fields[name])
            if value is None:
                del fields[name]
            else:
                fields[name] = int(value)
    try:
        message = ChatbotMessage.from_dict(fields)
    except (AttributeError, TypeError, OverflowError) as error:  # objects where it had strings
        raise ValueError(f"malformed bot message: {error}") from None
    if not message.message_id or not message.conversation_id:
        raise ValueError("bot message without msgId or conversationId")
    return message


def staff_id(message: ChatbotMessage) -> str:
    return str(message.sender_staff_id or message.sender_id or "")


def is_group(message: ChatbotMessage) -> bool:
    return str(message.conversation_type) == "2"


def wants_answer(message: ChatbotMessage) -> bool:
    """One-to-one messages and group messages that @mention the bot."""
    return not is_group(message) or bool(message.is_in_at_list)


def mentioned_staff(message: ChatbotMessage) -> tuple[str, ...]:
    """The staff ids a message @mentions, the bot left out (it has a dingtalkId, no staffId)."""
    bot = message.chatbot_user_id
    return tuple(
        str(user.staff_id)
        for user in message.at_users or []
        if user.staff_id and (not bot or user.dingtalk_id != bot)
    )


def plain_text(message: ChatbotMessage) -> str:
    """Text and rich text reduced to plain text, the leading @mentions removed."""
    if message.message_type == "text" and message.text is not None:
        text = clean.text(message.text.content)  # a number where the text belongs is its digits
    elif message.message_type == "richText" and message.rich_text_content is not None:
        text = "".join(
            clean.text(item["text"])
            for item in message.rich_text_content.rich_text_list or []
            if isinstance(item, dict) and "text" in item
        )
    else:
        text = ""
    return _LEADING_MENTION.sub("", text).strip()


def attachments(
    message: ChatbotMessage, fetch: Callable[[str], Fetch] | None = None
) -> tuple[Attachment, ...]:
    """The message's pictures and files; `fetch` makes each one's download handle from its
    downloadCode (adapters/dingtalk/files.py). Voice and video are named, not fetched."""

    def handle(code: object) -> Fetch | None:
        return fetch(code) if fetch is not None and isinstance(code, str) and code else None

    kind = message.message_type or "other"
    if kind == "richText" and message.rich_text_content is not None:
        return tuple(
            Attachment("image", fetch=handle(item["downloadCode"]))
            for item in message.rich_text_content.rich_text_list or []
            if isinstance(item, dict) and "downloadCode" in item
        )
    if kind in ("text", "richText"):
        return ()
    content = message.extensions.get("content", {})
    content = content if isinstance(content, dict) else {}
    if kind == "picture":
        code = message.image_content.download_code if message.image_content else None
        return (Attachment("image", fetch=handle(code)),)
    if kind == "file":
        name = str(content.get("fileName", ""))
        return (Attachment("file", name, fetch=handle(content.get("downloadCode"))),)
    return (Attachment(_ATTACHMENT_KINDS.get(kind, "other")),)


def to_inbound(
    message: ChatbotMessage,
    raw: Mapping[str, Any],
    agents: Collection[str] = (),
    fetch: Callable[[str], Fetch] | None = None,
    *,
    idle_window: float = 1800.0,
) -> Inbound:
    """One bot message as the core's Inbound; `agents`: the staff ids of the people who take
    escalated threads. DingTalk has no threads: the core places the message in the asker's
    window in this chat (`idle_window` seconds of quiet start a new one), so no thread id."""
    sent_at = clean.when(message.create_at, millis=True)  # "abc", 1e20: now, not a crash
    sender = staff_id(message)
    return Inbound(
        platform=PLATFORM,
        tenant=str(message.chatbot_corp_id or message.sender_corp_id or ""),
        chat_id=str(message.conversation_id),
        chat_type=ChatType.GROUP if is_group(message) else ChatType.DIRECT,
        thread_id="",  # decided by the core (engine/threads/lifecycle.py: continued)
        message_id=str(message.message_id),
        sender=Sender(
            id=sender, display_name=str(message.sender_nick or ""), is_agent=sender in agents
        ),
        text=plain_text(message),
        mentioned=wants_answer(message),
        attachments=attachments(message, fetch),
        sent_at=sent_at,
        raw=dict(raw),
        mentions=mentioned_staff(message),
        threaded=False,
        idle_window=idle_window,
    )


def reply_target(message: ChatbotMessage) -> ReplyTarget:
    return ReplyTarget(
        conversation_id=str(message.conversation_id),
        group=is_group(message),
        staff_id=staff_id(message),
        nick=str(message.sender_nick or ""),
        session_webhook=str(message.session_webhook or ""),
        webhook_expires_ms=int(clean.number(message.session_webhook_expired_time) or 0),
        message=message,
    )


def _source_line(number: int, title: str, location: str, section: str) -> str:
    shown = title or location or f"source {number}"
    line = f"[{shown}]({location})" if location.startswith(("http://", "https://")) else shown
    if section:
        line += f" · {section}"
    if location and not location.startswith(("http://", "https://")):
        line += f" — `{location}`"
    return f"{number}. {line}"


def answer_markdown(answer: Answer, *, hint_human: bool) -> str:
    """The final answer as DingTalk markdown: text, numbered sources, an escalation hint."""
    language = answer.language
    parts = [to_dingtalk(answer.text)]
    if answer.citations:
        heading = f"**{phrase('sources', language)}**"
        lines = [_source_line(c.number, c.title, c.location, c.section) for c in answer.citations]
        parts.append(heading + "\n\n" + "\n".join(lines))
    if hint_human and answer.outcome is not Outcome.HANDED_OFF:
        parts.append(f"_{phrase('hint_human', language)}_")
    return "\n\n".join(p for p in parts if p)


def partial_markdown(text: str) -> str:
    """A streamed prefix for the AI card, unfinished markup held back."""
    return to_dingtalk(text, partial=True)


def title_of(text: str) -> str:
    """The notification title DingTalk shows for a markdown message."""
    first = next((line for line in text.splitlines() if line.strip()), "teambot")
    return clip(re.sub(r"[*_`#>\[\]]", "", first).strip() or "teambot", 30)


def mention(text: str, target: ReplyTarget, *, webhook: bool) -> str:
    """In groups, @mention the asker: through the session webhook `@<staffId>` plus atUserIds
    is a real mention; the robot OpenAPI has no mentions, so it gets the name as text."""
    if not target.group or not target.staff_id:
        return text
    return f"@{target.staff_id if webhook else target.nick or target.staff_id}\n\n{text}"


def escalation_markdown(
    notice: EscalationNotice, agents: list[str], asker: ReplyTarget | None
) -> str:
    lines = [f"### {both('notice_title')}"]
    if agents:
        lines.append(" ".join(f"@{agent}" for agent in agents))
    who = f"{asker.nick} ({asker.staff_id})" if asker else notice.thread.thread_id
    lines += [
        f"**{both('notice_question')}:** {clip(notice.question, 500) or '—'}",
        f"**{both('notice_asked_by')}:** {who}",
        f"**{both('notice_conversation')}:** `{notice.thread.chat_id}`",
        f"**{both('notice_trigger')}:** {trigger_labels(notice.trigger)}",
    ]
    if notice.summary:
        recent = clip(to_dingtalk(notice.summary), 1500)
        lines.append(f"**{both('notice_recent')}:**\n\n{recent}")
    if notice.citations:
        lines.append(
            "\n".join(
                _source_line(c.number, c.title, c.location, c.section) for c in notice.citations
            )
        )
    if notice.link:
        lines.append(notice.link)
    return "\n\n".join(lines)
