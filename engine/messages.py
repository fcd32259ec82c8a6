"""Types that cross the adapter/engine boundary (docs/architecture.md, "Types that cross a
boundary")."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from engine import clean


class DownloadError(Exception):
    """An attachment's bytes could not be had: larger than allowed, expired, refused by the
    platform, unreachable, or slower than allowed. The message says which, in words."""


class Fetch(Protocol):
    """The attachment port: how the core gets one attachment's bytes from its platform, only
    when it reads them. Implemented by each adapter (a platform download API, a web upload)."""

    async def __call__(self, limit: int) -> bytes:
        """The bytes; raises `DownloadError` once more than `limit` bytes arrive, or when the
        platform refuses or fails. The caller bounds the time."""
        ...


class ChatType(StrEnum):
    DIRECT = "direct"
    GROUP = "group"


class Outcome(StrEnum):
    """How a turn ended. Stored with the turn and shown in metrics."""

    ANSWERED = "answered"
    NO_KNOWLEDGE = "no_knowledge"
    RETRIEVAL_ONLY = "retrieval_only"  # model server down or breaker open: passages, no model text
    TRUNCATED = "truncated"  # the answer hit max_tokens or the model's context
    INTERRUPTED = "interrupted"  # the model server reported an error in the middle of the answer
    TIMED_OUT = "timed_out"  # teambot's own total_timeout ended an answer still streaming
    TOO_LONG = "too_long"  # the question does not fit the model's context
    FAILED = "failed"
    HANDED_OFF = "handed_off"
    COMMAND = "command"  # a thread command such as "/resolve"; nothing was asked


@dataclass(frozen=True, slots=True)
class ThreadKey:
    """The unit of conversation, escalation and human takeover; decided by the adapter."""

    platform: str
    tenant: str
    chat_id: str
    thread_id: str

    def __str__(self) -> str:
        return f"{self.platform}:{self.tenant}:{self.chat_id}:{self.thread_id}"


@dataclass(frozen=True, slots=True)
class Sender:
    id: str
    display_name: str = ""
    is_bot: bool = False
    is_agent: bool = False  # one of the platform's configured agents (who take escalations)

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", clean.ident(self.id))
        object.__setattr__(self, "display_name", clean.text(self.display_name, clean.MAX_NAME))
        object.__setattr__(self, "is_bot", bool(self.is_bot))
        object.__setattr__(self, "is_agent", bool(self.is_agent))


@dataclass(frozen=True, slots=True)
class Attachment:
    """An image or file that came with a message. Its bytes stay on the platform until the core
    reads them through `fetch` (the attachment port); what the sender declares (name, size,
    mime) is a hint only: the type is decided from the bytes."""

    kind: str  # image | file | audio | video | other
    name: str = ""
    size: int = 0  # bytes as the platform declares them; 0 = unknown
    mime: str = ""  # as declared; never trusted
    fetch: Fetch | None = field(default=None, compare=False, repr=False)  # None: no download

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", clean.text(self.name, clean.MAX_NAME))
        object.__setattr__(self, "mime", clean.text(self.mime, clean.MAX_NAME))
        object.__setattr__(self, "size", max(0, int(self.size or 0)))


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """An earlier message of the thread, read by the adapter when the bot is called in late;
    the core decides whether it becomes context for the question."""

    author: str
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "author", clean.text(self.author, clean.MAX_NAME))
        object.__setattr__(self, "text", clean.text(self.text))


@dataclass(frozen=True, slots=True)
class Inbound:
    """One normalized user message: every field is clean (engine/clean.py) once it is built,
    whatever the platform sent, so nothing downstream has to defend itself."""

    platform: str
    tenant: str
    chat_id: str
    chat_type: ChatType
    thread_id: str
    message_id: str
    sender: Sender
    text: str
    mentioned: bool = True
    attachments: tuple[Attachment, ...] = ()
    sent_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    raw: Mapping[str, Any] | None = None
    history: tuple[ThreadMessage, ...] = ()  # earlier messages of the thread, oldest first
    language_hint: str = ""  # "zh" | "en" when the platform knows better than the text
    mentions: tuple[str, ...] = ()  # user ids the message @mentions, the bot left out
    threaded: bool = True  # False: the platform has no threads; the core keeps per-asker windows
    idle_window: float = 1800.0  # unthreaded: seconds of quiet after which a new thread opens

    def __post_init__(self) -> None:
        for name in ("platform", "tenant", "chat_id", "thread_id", "message_id"):
            object.__setattr__(self, name, clean.ident(getattr(self, name)))
        object.__setattr__(self, "text", clean.message(self.text))
        object.__setattr__(self, "mentioned", bool(self.mentioned))
        object.__setattr__(self, "attachments", tuple(self.attachments)[:50])
        object.__setattr__(self, "history", tuple(self.history)[-50:])
        mentions = (clean.ident(m) for m in tuple(self.mentions)[:50])
        object.__setattr__(self, "mentions", tuple(m for m in mentions if m))
        object.__setattr__(self, "threaded", bool(self.threaded))
        window = clean.number(self.idle_window)
        object.__setattr__(self, "idle_window", max(window, 0.0) if window is not None else 1800.0)
        hint = self.language_hint if self.language_hint in ("zh", "en") else ""
        object.__setattr__(self, "language_hint", hint)
        sent_at = self.sent_at
        if not isinstance(sent_at, datetime):
            sent_at = datetime.now(UTC)
        elif sent_at.tzinfo is None:
            sent_at = sent_at.replace(tzinfo=UTC)
        object.__setattr__(self, "sent_at", sent_at)

    @property
    def thread_key(self) -> ThreadKey:
        return ThreadKey(self.platform, self.tenant, self.chat_id, self.thread_id)


@dataclass(frozen=True, slots=True)
class Citation:
    """A numbered source shown under an answer; built from a knowledge Passage (or a web result)."""

    number: int
    title: str
    source: str
    location: str  # URL or path
    section: str = ""
    kind: str = "knowledge"  # knowledge | web
    fetched_at: str = ""  # web results: when the page was fetched (ISO 8601, UTC)


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int | None = None  # None when the server does not report cache figures


@dataclass(frozen=True, slots=True)
class Timings:
    """Seconds from the moment the core took the message."""

    retrieval: float = 0.0
    first_token: float | None = None
    first_visible: float | None = None
    total: float = 0.0


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    outcome: Outcome
    language: str = "en"
    reasoning: str = ""  # kept for audit, never shown by default
    citations: tuple[Citation, ...] = ()
    usage: Usage = field(default_factory=Usage)
    timings: Timings = field(default_factory=Timings)
    notice: str = ""  # a user-visible note about degraded service, already in `text`
    turn_id: int | None = None
    prompt: str = ""  # the user turn as sent to the model; "" when the model was not asked
    model_text: str = ""  # the model's own words, as later turns send them back


@dataclass(frozen=True, slots=True)
class EscalationNotice:
    """What a human agent needs to pick up a thread."""

    thread: ThreadKey
    question: str
    trigger: str
    summary: str = ""
    citations: tuple[Citation, ...] = ()
    link: str = ""


CLICKS = ("up", "down", "human")


@dataclass(frozen=True, slots=True)
class Click:
    """A person's button on an answer or a thread, as an adapter hands it to the core: "up" or
    "down" (feedback on `turn_id`, with an optional comment) or "human" (a person is asked for:
    the thread of `turn_id`, or `thread` where the adapter knows it but no turn)."""

    action: str  # up | down | human
    user_id: str
    turn_id: int | None = None
    thread: ThreadKey | None = None
    comment: str = ""
    chat: tuple[str, str, str] | None = None  # (platform, tenant, chat id): only a turn of it
    trigger: str = "button"  # what a "human" click records as the escalation's trigger

    def __post_init__(self) -> None:
        if self.action not in CLICKS:
            raise ValueError(f"unknown click {self.action!r}: one of {', '.join(CLICKS)}")
        if self.turn_id is None and (self.thread is None or self.action != "human"):
            raise ValueError(f"a {self.action!r} click names its turn")
        object.__setattr__(self, "user_id", clean.ident(self.user_id))
        object.__setattr__(self, "comment", clean.text(self.comment))
