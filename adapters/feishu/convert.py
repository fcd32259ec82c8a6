"""Pure conversions: a Feishu event -> Inbound, an Answer -> card JSON / plain text.

No I/O here; tests feed recorded payloads straight in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from lark_oapi.api.im.v1 import EventMessage, P2ImMessageReceiveV1
from lark_oapi.core.json import JSON

from adapters import payload
from adapters.markdown import to_feishu
from engine import clean
from engine.catalog import both
from engine.messages import (
    Answer,
    Attachment,
    ChatType,
    Citation,
    EscalationNotice,
    Fetch,
    Inbound,
    Outcome,
    Sender,
    ThreadKey,
)
from engine.threads.escalation import trigger_labels

log = logging.getLogger(__name__)

PLATFORM = "feishu"
# (message id, file or image key, "image" | "file") -> the download handle (adapters/feishu/files)
Resource = Callable[[str, str, str], Fetch]
ANSWER_ELEMENT = "answer"
CARD_MAX_CHARS = 6000  # a card is at most 30 KB of JSON; CJK text is 3 bytes a character
TEXT_MAX_CHARS = 8000
HELPFUL = both("button_helpful")
HUMAN = both("button_person")
_PLACEHOLDER = re.compile(r"@_user_\d+|@_all")
_ATTACHMENT_KINDS = {
    "image": "image",
    "file": "file",
    "audio": "audio",
    "media": "video",
    "sticker": "image",
}


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes: the message to reply to, and whether in its thread."""

    key: ThreadKey
    message_id: str
    in_thread: bool


@dataclass(frozen=True, slots=True)
class Received:
    """One `im.message.receive_v1`, decided: what to hand the core and where to reply."""

    inbound: Inbound
    target: ReplyTarget
    event_id: str
    from_app: bool


def _mentions(
    message: EventMessage, bot_open_id: str
) -> tuple[dict[str, str], bool, tuple[str, ...]]:
    """A message's mentions: the text each placeholder becomes (the bot's: nothing), whether
    the bot is mentioned, and the open ids of the others mentioned."""
    names: dict[str, str] = {}
    mentioned = False
    others: list[str] = []
    for mention in message.mentions or []:
        open_id = mention.id.open_id if mention.id else None
        if mention.key:
            names[mention.key] = "" if open_id == bot_open_id else f"@{mention.name or ''}"
        mentioned = mentioned or (bool(bot_open_id) and open_id == bot_open_id)
        if open_id and open_id != bot_open_id:
            others.append(open_id)
    return names, mentioned, tuple(others)


def received(
    event: P2ImMessageReceiveV1,
    bot_open_id: str,
    agents: Collection[str] = (),
    resource: Resource | None = None,
) -> Received | None:
    """The event as an Inbound (mention placeholders removed), or None when it has no message;
    `agents`: the open ids of the people who take escalated threads; `resource`: makes the
    download handle of an image or file (message id, key, "image" | "file")."""
    data = event.event
    message = data.message if data is not None else None
    if message is None or not message.message_id or not message.chat_id:
        return None
    sender = data.sender if data is not None else None
    sender_id = (sender.sender_id.open_id if sender and sender.sender_id else None) or ""
    header = event.header
    tenant = (header.tenant_key if header else None) or (sender.tenant_key if sender else "") or ""
    names, mentioned, others = _mentions(message, bot_open_id)
    message_id = message.message_id

    def fetch(key: str, kind: str) -> Fetch | None:
        return resource(message_id, key, kind) if resource is not None and key else None

    text, attachments = message_text(
        message.message_type or "", message.content or "", names, fetch
    )
    chat_type = ChatType.DIRECT if message.chat_type == "p2p" else ChatType.GROUP
    thread_id = message.thread_id or message.root_id or message.message_id
    inbound = Inbound(
        platform=PLATFORM,
        tenant=tenant,
        chat_id=message.chat_id,
        chat_type=chat_type,
        thread_id=thread_id,
        message_id=message.message_id,
        sender=Sender(
            id=sender_id,
            is_bot=bool(sender and sender.sender_type == "app"),
            is_agent=sender_id in agents,
        ),
        text=text,
        mentioned=mentioned or chat_type == ChatType.DIRECT,
        mentions=others,
        attachments=attachments,
        sent_at=_sent_at(message.create_time),
        raw=json.loads(JSON.marshal(event)),
    )
    in_thread = bool(message.thread_id) or message.chat_type == "topic"
    return Received(
        inbound=inbound,
        target=ReplyTarget(inbound.thread_key, message.message_id, in_thread),
        event_id=(header.event_id if header else None) or "",
        from_app=inbound.sender.is_bot,
    )


def event_type(plain: Mapping[str, Any]) -> str:
    """The event's type: the 2.0 schema's header.event_type, or the 1.0 event.type."""
    header = plain.get("header")
    if isinstance(header, dict) and header.get("event_type"):
        return str(header["event_type"])
    event = plain.get("event")
    if isinstance(event, dict) and event.get("type"):
        return str(event["type"])
    return str(plain.get("type") or "")


def message_text(
    message_type: str,
    content: str,
    names: Mapping[str, str],
    fetch: Callable[[str, str], Fetch | None] | None = None,
) -> tuple[str, tuple[Attachment, ...]]:
    """Plain text of a `text` or `post` message; other types become attachments, each with its
    download handle from `fetch(key, "image" | "file")` (images inside a post too)."""
    fetch = fetch or (lambda key, kind: None)
    try:
        body = payload.loads(content, what="message content") if content else {}
    except payload.PayloadError as error:
        if "not JSON" not in str(error):  # over a limit: say so rather than drop it quietly
            log.warning("feishu: a %s message could not be read: %s", message_type, error)
            return "", (Attachment(kind="other", name="unreadable message"),)
        body = {}
    if not isinstance(body, dict):
        body = {}
    if message_type == "text":
        return _clean(str(body.get("text", "")), names), ()
    if message_type == "post":
        return _post_text(body, names, fetch)
    kind = _ATTACHMENT_KINDS.get(message_type, "other")
    name = str(body.get("file_name", "")) if isinstance(body.get("file_name"), str) else ""
    if message_type == "sticker":
        handle = None  # stickers are not message resources: nothing to download
    elif message_type == "image":
        handle = fetch(_key(body, "image_key"), "image")
    else:
        handle = fetch(_key(body, "file_key"), "file")
    return "", (Attachment(kind=kind, name=name, fetch=handle),)


def _key(node: Mapping[str, Any], field: str) -> str:
    value = node.get(field)
    return value if isinstance(value, str) else ""


def _post_text(
    body: dict[str, Any], names: Mapping[str, str], fetch: Callable[[str, str], Fetch | None]
) -> tuple[str, tuple[Attachment, ...]]:
    if "content" not in body:  # the locale-wrapped form: {"zh_cn": {"title", "content"}}
        body = next((v for v in body.values() if isinstance(v, dict)), {})
    lines: list[str] = []
    attachments: list[Attachment] = []
    title = str(body.get("title") or "").strip()
    if title:
        lines.append(title)
    for paragraph in body.get("content") or []:
        parts: list[str] = []
        for node in paragraph if isinstance(paragraph, list) else []:
            tag = node.get("tag") if isinstance(node, dict) else None
            if tag in ("text", "md", "code_block"):
                parts.append(str(node.get("text", "")))
            elif tag == "a":
                label, href = str(node.get("text", "")), str(node.get("href", ""))
                parts.append(f"{label} ({href})" if href and href != label else label or href)
            elif tag == "at":
                placeholder = str(node.get("user_id", ""))
                parts.append(names.get(placeholder, f"@{node.get('user_name', '')}"))
            elif tag == "emotion":
                parts.append(f":{node.get('emoji_type', '')}:")
            elif tag == "img":
                handle = fetch(_key(node, "image_key"), "image")
                attachments.append(Attachment(kind="image", fetch=handle))
            elif tag == "media":
                attachments.append(
                    Attachment(kind="video", fetch=fetch(_key(node, "file_key"), "file"))
                )
        lines.append("".join(parts))
    return _clean("\n".join(lines), names), tuple(attachments)


def _clean(text: str, names: Mapping[str, str]) -> str:
    replaced = _PLACEHOLDER.sub(lambda m: names.get(m.group(0), ""), text)
    lines = [re.sub(r"[ \t]{2,}", " ", line).strip() for line in replaced.splitlines()]
    return "\n".join(lines).strip()


def _sent_at(create_time: int | str | None) -> datetime:
    return clean.when(create_time, millis=True)


def _now() -> datetime:
    return datetime.now(UTC)


def request_uuid(kind: str, *parts: object) -> str:
    """An idempotency key (Feishu keeps them an hour; at most 50 characters)."""
    digest = hashlib.sha1("|".join(str(p) for p in parts).encode()).hexdigest()[:40]
    return f"tb{kind[:6]}-{digest}"


# -- cards ------------------------------------------------------------------------------------


def streaming_card(placeholder: str, *, streaming: bool) -> dict[str, Any]:
    """The first card: one markdown element the answer streams into."""
    config: dict[str, Any] = {"update_multi": True, "summary": {"content": placeholder}}
    if streaming:
        config["streaming_mode"] = True
        config["streaming_config"] = {
            "print_frequency_ms": {"default": 30},
            "print_step": {"default": 2},
        }
    return {
        "schema": "2.0",
        "config": config,
        "body": {"elements": [_markdown(placeholder, ANSWER_ELEMENT)]},
    }


def partial_card(text: str) -> dict[str, Any]:
    """The card while the answer grows (message patch mode)."""
    return streaming_card(partial_markdown(text), streaming=False)


def partial_markdown(text: str) -> str:
    """A streamed prefix as card Markdown, unfinished markup held back."""
    return to_feishu(text, partial=True) or "…"


def final_card(answer: Answer, text: str, target: ReplyTarget | None) -> dict[str, Any]:
    """The finished card: the answer, numbered sources, and the feedback buttons."""
    elements: list[dict[str, Any]] = [_markdown(to_feishu(text) or "…", ANSWER_ELEMENT)]
    if answer.citations:
        elements.append({"tag": "hr"})
        elements.append(_markdown(sources_markdown(answer.citations), "sources"))
    if target is not None and answer.turn_id is not None and _wants_buttons(answer):
        value = button_value(target, answer.turn_id)
        elements.append(
            {
                "tag": "column_set",
                "columns": [
                    _button_column(HELPFUL, "primary", {**value, "tb": "up"}),
                    _button_column(HUMAN, "default", {**value, "tb": "human"}),
                ],
            }
        )
    return {
        "schema": "2.0",
        "config": {
            "update_multi": True,
            "streaming_mode": False,
            "summary": {"content": _summary(text)},
        },
        "body": {"elements": elements},
    }


def _wants_buttons(answer: Answer) -> bool:
    return answer.outcome in (Outcome.ANSWERED, Outcome.NO_KNOWLEDGE, Outcome.RETRIEVAL_ONLY)


def sources_markdown(citations: tuple[Citation, ...]) -> str:
    lines = [f"**{both('sources')}**"]
    for c in citations:
        title = (c.title or c.source or c.location).replace("[", "(").replace("]", ")")
        where = f" · {c.section}" if c.section else ""
        if c.location.startswith(("http://", "https://")):
            lines.append(f"{c.number}. [{title}]({c.location}){where}")
        else:
            shown = f" ({c.location})" if c.location and c.location != title else ""
            lines.append(f"{c.number}. {title}{shown}{where}")
    return "\n".join(lines)


def plain_text(answer: Answer, text: str) -> dict[str, str]:
    """The one plain message sent when the card cannot be updated."""
    if not answer.citations:
        return {"text": text}
    sources = "\n".join(
        f"[{c.number}] {c.title or c.source} {c.location}".rstrip() for c in answer.citations
    )
    return {"text": f"{text}\n\n{both('sources')}:\n{sources}"}


def button_value(target: ReplyTarget, turn_id: int) -> dict[str, Any]:
    """What a button carries back: enough to find the turn and the thread without a lookup."""
    key = target.key
    return {
        "turn": turn_id,
        "tenant": key.tenant,
        "chat": key.chat_id,
        "thread": key.thread_id,
        "mid": target.message_id,
        "rit": target.in_thread,
    }


@dataclass(frozen=True, slots=True)
class Click:
    """A click on one of our buttons."""

    action: str  # "up" | "human"
    turn_id: int
    target: ReplyTarget


def click(value: Mapping[str, Any] | None) -> Click | None:
    """The button value back as a Click; None when it is not one of ours."""
    if not value or value.get("tb") not in ("up", "human"):
        return None
    try:
        key = ThreadKey(PLATFORM, str(value["tenant"]), str(value["chat"]), str(value["thread"]))
        target = ReplyTarget(key, str(value["mid"]), bool(value.get("rit")))
        return Click(str(value["tb"]), int(value["turn"]), target)
    except (KeyError, TypeError, ValueError):
        return None


def escalation_card(notice: EscalationNotice, link: str, agents: list[str]) -> dict[str, Any]:
    """The card posted in the escalation chat."""
    question = notice.question.replace("<", "&#60;").replace(">", "&#62;")
    lines = [
        f"**{both('notice_question')}**\n{question or '—'}",
        f"**{both('notice_trigger')}**: {trigger_labels(notice.trigger)}",
    ]
    if notice.summary:
        lines.append(f"**{both('notice_summary')}**\n{to_feishu(notice.summary)}")
    if link:
        lines.append(f"[{both('notice_open')}]({link})")
    if agents:
        lines.append(" ".join(f"<at id={agent}></at>" for agent in agents))
    elements = [_markdown("\n\n".join(lines), "notice")]
    if notice.citations:
        elements.append(_markdown(sources_markdown(notice.citations), "sources"))
    return {
        "schema": "2.0",
        "config": {"update_multi": True, "summary": {"content": _summary(notice.question)}},
        "header": {
            "title": {"tag": "plain_text", "content": both("notice_title")},
            "template": "orange",
        },
        "body": {"elements": elements},
    }


def chat_link(domain: str, chat_id: str) -> str:
    """An applink that opens the chat in the Feishu / Lark client."""
    host = "applink.larksuite.com" if "larksuite" in domain else "applink.feishu.cn"
    return f"https://{host}/client/chat/open?openChatId={chat_id}"


def _markdown(content: str, element_id: str) -> dict[str, Any]:
    return {"tag": "markdown", "element_id": element_id, "content": content}


def _button_column(label: str, kind: str, value: dict[str, Any]) -> dict[str, Any]:
    button = {
        "tag": "button",
        "text": {"tag": "plain_text", "content": label},
        "type": kind,
        "behaviors": [{"type": "callback", "value": value}],
    }
    return {"tag": "column", "width": "auto", "elements": [button]}


def _summary(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= 60 else flat[:59] + "…"
