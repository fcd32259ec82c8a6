"""What the store returns: frozen records of threads, turns and claims, never ORM objects."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from engine.messages import ChatType, Citation, Outcome, ThreadKey, Timings, Usage
from engine.store.tables import (
    ThreadState,
)


@dataclass(frozen=True, slots=True)
class ThreadRecord:
    id: int
    key: ThreadKey
    state: ThreadState
    state_changed_at: datetime
    taken_by: str | None
    escalation_trigger: str | None
    created_at: datetime
    last_message_at: datetime
    chat_type: ChatType | None = None  # None: a thread from before the chat type was stored
    asker_id: str = ""  # who opened the thread ("" before it was stored)


@dataclass(frozen=True, slots=True)
class TurnRecord:
    id: int
    thread_id: int  # threads.id
    message_id: str
    asker_id: str
    asker_name: str
    question: str
    answer: str
    outcome: Outcome
    language: str
    created_at: datetime
    reasoning: str = ""
    citations: tuple[Citation, ...] = ()
    usage: Usage = dataclasses.field(default_factory=Usage)
    timings: Timings = dataclasses.field(default_factory=Timings)
    prompt: str = ""  # the user turn as sent to the model ("" when it was not asked)
    model_text: str = ""  # what the model said, as it goes back in later turns


@dataclass(frozen=True, slots=True)
class Claim:
    """A newly claimed message's thread and the thread's last turns (oldest first); `new`: this
    claim created the thread (so nothing of it is stored yet: no turns, no attachments)."""

    thread: ThreadRecord
    history: tuple[TurnRecord, ...]
    new: bool = False


@dataclass(frozen=True, slots=True)
class UnansweredEvent:
    """A message that was claimed but whose turn was never persisted (e.g. a crash mid-answer)."""

    platform: str
    message_id: str
    thread_key: ThreadKey
    received_at: datetime
    question: str = ""
    asker_id: str = ""


def encode_key(key: ThreadKey) -> str:
    return json.dumps([key.platform, key.tenant, key.chat_id, key.thread_id], ensure_ascii=False)


def decode_key(text: str) -> ThreadKey:
    platform, tenant, chat_id, thread_id = json.loads(text)
    return ThreadKey(platform, tenant, chat_id, thread_id)


def thread_record(row: Any) -> ThreadRecord:
    """From a Thread or a row of its table (same names)."""
    return ThreadRecord(
        id=row.id,
        key=ThreadKey(row.platform, row.tenant, row.chat_id, row.thread_id),
        state=ThreadState(row.state),
        state_changed_at=row.state_changed_at,
        taken_by=row.taken_by,
        escalation_trigger=row.escalation_trigger,
        created_at=row.created_at,
        last_message_at=row.last_message_at,
        chat_type=ChatType(row.chat_type) if row.chat_type else None,
        asker_id=row.asker_id or "",
    )


_CITATION_FIELDS = frozenset(f.name for f in dataclasses.fields(Citation))


def citations_of(raw: Sequence[dict[str, Any]] | None) -> tuple[Citation, ...]:
    return tuple(
        Citation(**{k: v for k, v in c.items() if k in _CITATION_FIELDS}) for c in raw or ()
    )


def turn_record(row: Any) -> TurnRecord:
    """From a Turn or a row of its table (same names)."""
    return TurnRecord(
        id=row.id,
        thread_id=row.thread_id,
        message_id=row.message_id,
        asker_id=row.asker_id,
        asker_name=row.asker_name,
        question=row.question,
        answer=row.answer,
        outcome=Outcome(row.outcome),
        language=row.language,
        created_at=row.created_at,
        reasoning=row.reasoning,
        citations=citations_of(row.citations),
        usage=Usage(row.prompt_tokens, row.completion_tokens, row.cached_tokens),
        timings=Timings(row.retrieval_s, row.first_token_s, row.first_visible_s, row.total_s),
        prompt=getattr(row, "prompt", None) or "",
        model_text=getattr(row, "model_text", None) or "",
    )


@dataclass(frozen=True, slots=True)
class Read:
    """One attachment after reading: its text, or why there is none (`error`, in words)."""

    name: str
    kind: str  # what the bytes are: image | pdf | docx | faq | html | markdown | text; or declared
    mime: str = ""  # from the bytes; "" when they never came
    size: int = 0
    text: str = ""
    error: str = ""  # a phrase key's reason, already in the asker's language
    data: bytes | None = None  # the bytes, when small enough to keep for the console
    id: int | None = None  # its row once stored
    kept: bool = False  # its bytes are stored with the thread (for the console)

    @property
    def image(self) -> bool:
        return self.kind == "image"
