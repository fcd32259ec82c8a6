"""Pure conversions for Slack: raw events -> Inbound, Answer -> Block Kit, Markdown -> mrkdwn."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from adapters import payload
from adapters.markdown import to_mrkdwn
from engine import clean
from engine.catalog import both, phrase
from engine.messages import (
    Answer,
    Attachment,
    ChatType,
    Citation,
    EscalationNotice,
    Fetch,
    Inbound,
    Sender,
    ThreadKey,
    ThreadMessage,
)
from engine.text import clip
from engine.threads.escalation import trigger_labels

PLATFORM = "slack"
SECTION_CHARS = 3000  # a section block's text limit
MESSAGE_CHARS = 3900  # what one streamed edit shows (Slack truncates `text` past ~4000)
STREAM_CHARS = 12_000  # chat.startStream/appendStream markdown limit
HELPFUL = "teambot_helpful"
ESCALATE = "teambot_escalate"
DM_THREAD = "dm"  # thread id of a direct-message conversation's top level

# Subtypes that are still a person writing; every other subtype (edits, deletions, joins,
# bot posts, channel topic changes …) is ignored.
_PERSON_SUBTYPES = {None, "file_share", "thread_broadcast"}
_FILE_KINDS = {"image": "image", "video": "video", "audio": "audio"}


@dataclass(frozen=True, slots=True)
class Where:
    """Where a reply goes: the channel, the thread it belongs to, and the thread_ts to post with."""

    tenant: str
    channel: str
    thread_id: str
    reply_ts: str | None  # None: top level of a DM

    @property
    def key(self) -> ThreadKey:
        return ThreadKey(PLATFORM, self.tenant, self.channel, self.thread_id)


def message_id(event: Mapping[str, Any]) -> str:
    """The dedupe key: the same for a message's `message` and `app_mention` events and retries."""
    client_msg_id = event.get("client_msg_id")
    if client_msg_id:
        return str(client_msg_id)
    return f"{event.get('channel', '')}:{event.get('ts', '')}"


def malformed_request(headers: Mapping[str, str], body: bytes) -> str:
    """Why an Events API request cannot be a Slack request (answered 400 before Bolt reads it,
    which would fail with a 500 on these), or "" when it may be one."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "body is not UTF-8"
    stamp = headers.get("x-slack-request-timestamp")
    if stamp is not None and not (stamp.isascii() and stamp.strip().isdigit()):
        return "X-Slack-Request-Timestamp is not a number"
    kind = headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        form = parse_qs(text).get("payload")
        if form is None:
            return ""
        text = form[0]
    elif kind != "application/json":
        return ""
    try:
        parsed = payload.loads(text, what="payload" if kind != "application/json" else "body")
    except payload.PayloadError as error:
        return str(error)
    if not isinstance(parsed, dict):
        return "body is not a JSON object"
    for name in ("event", "user", "team", "channel", "container", "view", "message"):
        if parsed.get(name) is not None and not isinstance(parsed[name], dict):
            return f"{name} is not a JSON object"
    return ""


def is_from_person(event: Mapping[str, Any], bot_user_id: str) -> bool:
    """False for the bot's own and other bots' messages, edits, deletions, joins, other subtypes."""
    if event.get("subtype") not in _PERSON_SUBTYPES or event.get("hidden"):
        return False
    if event.get("bot_id") or event.get("bot_profile"):
        return False
    user = event.get("user")
    return bool(user) and user != bot_user_id


def mentions(text: str, user_id: str) -> bool:
    return bool(user_id) and f"<@{user_id}" in text


_USER_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")


def mentioned_users(text: str, bot_user_id: str) -> tuple[str, ...]:
    """The user ids a message @mentions, in order, the bot left out."""
    found = dict.fromkeys(_USER_MENTION.findall(text))
    return tuple(user for user in found if user != bot_user_id)


def where(event: Mapping[str, Any], tenant: str) -> Where:
    """Channels: the event's thread (thread_ts, else its ts). DMs: top level unless in a thread."""
    channel = str(event.get("channel", ""))
    thread_ts = event.get("thread_ts")
    if thread_ts:
        return Where(tenant, channel, str(thread_ts), str(thread_ts))
    if event.get("channel_type") == "im" or channel.startswith("D"):
        return Where(tenant, channel, DM_THREAD, None)
    ts = str(event.get("ts", ""))
    return Where(tenant, channel, ts, ts)


def is_late_in_thread(event: Mapping[str, Any]) -> bool:
    """A reply inside an existing thread (not the message that starts it)."""
    thread_ts = event.get("thread_ts")
    return bool(thread_ts) and thread_ts != event.get("ts")


_SLACK_LINK = re.compile(r"<([^<>|]+)(?:\|([^<>]*))?>")


def plain_text(text: str, bot_user_id: str) -> str:
    """Slack's message text as a person reads it, without the bot's own mention."""
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>", "", text)

    def link(match: re.Match[str]) -> str:
        target, label = match.group(1), match.group(2)
        if target.startswith("@"):
            return f"@{label or target[1:]}"
        if target.startswith("#"):
            return f"#{label or target[1:]}"
        if target.startswith("!subteam^"):
            return f"@{label or 'group'}"
        if target.startswith("!"):
            return f"@{label or target[1:]}"
        return f"{label} ({target})" if label and label != target else target

    text = _SLACK_LINK.sub(link, text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return re.sub(r"[ \t]+", " ", text).strip()


def attachments(
    event: Mapping[str, Any], fetch: Callable[[Mapping[str, Any]], Fetch | None] | None = None
) -> tuple[Attachment, ...]:
    """The event's files; `fetch` makes each one's download handle (adapters/slack/files.py)."""
    files = event.get("files") or []
    found = []
    for file in files if isinstance(files, list) else []:
        if not isinstance(file, Mapping):
            continue
        mimetype = str(file.get("mimetype") or "")
        kind = _FILE_KINDS.get(mimetype.split("/", 1)[0], "file")
        size = file.get("size")
        found.append(
            Attachment(
                kind=kind,
                name=str(file.get("name") or ""),
                size=size if isinstance(size, int) and not isinstance(size, bool) else 0,
                mime=mimetype,
                fetch=fetch(file) if fetch is not None else None,
            )
        )
    return tuple(found)


def to_inbound(
    event: Mapping[str, Any],
    *,
    tenant: str,
    bot_user_id: str,
    mentioned: bool,
    history: tuple[ThreadMessage, ...] = (),
    agents: Collection[str] = (),
    fetch: Callable[[Mapping[str, Any]], Fetch | None] | None = None,
) -> Inbound:
    """One Slack message as the core's Inbound; `history`: the thread's earlier messages,
    `agents`: the user ids of the people who take escalated threads."""
    place = where(event, tenant)
    raw_text = str(event.get("text") or "")
    text = plain_text(raw_text, bot_user_id)
    profile = event.get("user_profile") or {}
    name = profile.get("display_name") or profile.get("real_name") or ""
    sent_at = clean.when(event.get("ts"))  # "1e20", "inf", "abc": now, never an OverflowError
    is_dm = event.get("channel_type") == "im" or place.channel.startswith("D")
    user = str(event.get("user", ""))
    return Inbound(
        platform=PLATFORM,
        tenant=tenant,
        chat_id=place.channel,
        chat_type=ChatType.DIRECT if is_dm else ChatType.GROUP,
        thread_id=place.thread_id,
        message_id=message_id(event),
        sender=Sender(id=user, display_name=str(name), is_agent=user in agents),
        text=text,
        mentioned=mentioned,
        mentions=mentioned_users(raw_text, bot_user_id),
        attachments=attachments(event, fetch),
        sent_at=sent_at,
        raw=dict(event),
        history=history,
    )


HEADER = "Earlier in this thread:"  # engine/threads/context.py lists the messages under it


def thread_history(
    messages: Iterable[Mapping[str, Any]],
    *,
    current_ts: str,
    bot_user_id: str,
    limit: int,
    max_chars: int,
) -> tuple[ThreadMessage, ...]:
    """Earlier messages of a thread by people, oldest first: the last `limit`, and as many of
    those as fit in `max_chars` once the core lists them (engine/threads/context.py)."""
    found: list[ThreadMessage] = []
    for message in messages:
        if message.get("ts") == current_ts or not is_from_person(message, bot_user_id):
            continue
        text = plain_text(str(message.get("text") or ""), bot_user_id)
        if not text:
            continue
        profile = message.get("user_profile") or {}
        name = profile.get("display_name") or profile.get("real_name") or message.get("user")
        found.append(ThreadMessage(author=str(name or ""), text=clip(" ".join(text.split()), 300)))
    found = found[-limit:] if limit > 0 else []

    def size(items: list[ThreadMessage]) -> int:
        return len(HEADER) + sum(len(f"- {m.author}: {m.text}") + 1 for m in items)

    while found and size(found) > max_chars:
        found.pop(0)  # the oldest go first
    return tuple(found)


# -- Markdown -> Slack mrkdwn -------------------------------------------------------------------


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# The model's Markdown as Slack mrkdwn (adapters/markdown.py); `partial=True` for a streamed
# prefix, which holds back markup that is not closed yet.
markdown_to_mrkdwn = to_mrkdwn


# -- Answer -> Block Kit ------------------------------------------------------------------------


def source_line(citation: Citation) -> str:
    title = _escape(citation.title or citation.source or citation.location)
    if citation.section:
        title = f"{title} › {_escape(citation.section)}"
    location = citation.location
    if location.startswith(("http://", "https://")):
        return f"[{citation.number}] <{location}|{title}>"
    return f"[{citation.number}] {title}" + (f" ({_escape(location)})" if location else "")


def button_value(turn_id: int, place: Where) -> str:
    return json.dumps(
        {
            "turn": turn_id,
            "tenant": place.tenant,
            "thread": place.thread_id,
            "reply": place.reply_ts,
        },
        separators=(",", ":"),
    )


def parse_button_value(value: str, channel: str) -> tuple[int, Where]:
    """The turn and place a button carries; `ValueError` (or KeyError) when it is not ours."""
    data = payload.loads(value, max_bytes=2000, max_depth=2, what="button value")
    place = Where(str(data["tenant"]), channel, str(data["thread"]), data.get("reply"))
    return int(data["turn"]), place


def answer_pieces(answer: Answer) -> list[str]:
    """The answer in mrkdwn, split to fit a section block each."""
    from engine.text import split_text

    return split_text(markdown_to_mrkdwn(answer.text) or " ", SECTION_CHARS)


def final_blocks(
    piece: str, answer: Answer, place: Where, *, last: bool, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """One message of the final answer; the last one carries the sources and the buttons."""
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": piece}}]
    if not last:
        return blocks
    if answer.citations:
        elements = [
            {"type": "mrkdwn", "text": clip(source_line(c), 3000)} for c in answer.citations[:10]
        ]
        blocks.append({"type": "context", "elements": elements})
    if answer.turn_id is not None and answer.text.strip():
        value = button_value(answer.turn_id, place)
        blocks.append(
            {
                "type": "actions",
                "block_id": f"teambot_feedback_{answer.turn_id}",
                "elements": [
                    _button(labels["helpful"], HELPFUL, value, style="primary"),
                    _button(labels["person"], ESCALATE, value),
                ],
            }
        )
    return blocks


def _button(text: str, action_id: str, value: str, style: str = "") -> dict[str, Any]:
    button: dict[str, Any] = {
        "type": "button",
        "text": {"type": "plain_text", "text": text, "emoji": True},
        "action_id": action_id,
        "value": value,
    }
    if style:
        button["style"] = style
    return button


def _labels(language: str) -> Mapping[str, str]:
    return {
        "thinking": phrase("thinking", language),
        "helpful": f"👍 {phrase('button_helpful', language)}",
        "person": phrase("button_person", language),
        "thanks": phrase("thanks_feedback", language),
    }


_LABELS = {language: _labels(language) for language in ("en", "zh")}  # known once, not per reply


def labels(language: str) -> Mapping[str, str]:
    """What the Slack reply shows in `language` (anything but 'zh' is English), from the
    catalog: the placeholder, the answer's button labels and the thanks for a click."""
    return _LABELS.get(language, _LABELS["en"])


def mention_text(targets: Sequence[str]) -> str:
    """`<!subteam^S…>` for user groups, `<@U…>` for users, `<!here>` / `<!channel>`."""
    out = []
    for target in targets:
        target = target.strip()
        if not target:
            continue
        if target in {"here", "channel", "everyone"}:
            out.append(f"<!{target}>")
        elif target.startswith("S"):
            out.append(f"<!subteam^{target}>")
        else:
            out.append(f"<@{target}>")
    return " ".join(out)


def escalation_message(
    notice: EscalationNotice, *, permalink: str, mention: str
) -> tuple[str, list[dict[str, Any]]]:
    """The notice for the human channel: who to ping, the question, a link to the thread."""
    head = f"{mention} {both('notice_thread_needs')}".strip()
    question = clip(_escape(notice.question), 1500) or "(no question text)"
    link = f"<{permalink}|{both('notice_open_thread')}>" if permalink else str(notice.thread)
    why = _escape(trigger_labels(notice.trigger))
    lines = [f"*{head}* ({why})", f">{question}".replace("\n", "\n>"), link]
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}
    ]
    if notice.summary:
        summary = clip(to_mrkdwn(notice.summary), 2800)
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": summary}]})
    text = f"{head}: {clip(notice.question, 200)} {permalink}".strip()
    return text, blocks
