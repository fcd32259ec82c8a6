"""The conversation core's tables: threads, turns, processed events (dedupe), feedback,
handoffs (one per escalation), FAQ candidates (the learning loop) and the attachments read in a
thread.

Portable across SQLite and PostgreSQL: plain strings instead of database enums, the generic JSON
type, and UTC-aware timestamps on both (SQLite keeps no zone, so `UTCDateTime` restores it).
Schema changes go through Alembic (`bot/migrations`), never `create_all` in production.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from knowledge.timestamps import UTCDateTime
from knowledge.timestamps import utcnow as utcnow  # the engine's modules take it from here

# Deterministic constraint names, so autogenerate, batch mode on SQLite and PostgreSQL agree.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class ThreadState(StrEnum):
    OPEN = "open"  # the bot answers
    ESCALATED = "escalated"  # waiting for a human
    HUMAN = "human"  # a human replied; the bot stays silent
    RESOLVED = "resolved"


class FeedbackValue(StrEnum):
    UP = "up"
    DOWN = "down"


class EngineBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Thread(EngineBase):
    __tablename__ = "threads"
    __table_args__ = (
        UniqueConstraint("platform", "tenant", "chat_id", "thread_id"),
        # where a platform has no threads, the core finds an asker's latest thread in a chat
        Index("ix_threads_asker", "platform", "tenant", "chat_id", "asker_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    tenant: Mapped[str] = mapped_column(String(255))
    chat_id: Mapped[str] = mapped_column(String(255))
    thread_id: Mapped[str] = mapped_column(String(255))  # the platform's thread id
    state: Mapped[str] = mapped_column(String(16), index=True)  # a ThreadState value
    state_changed_at: Mapped[datetime]
    taken_by: Mapped[str | None] = mapped_column(String(255))
    escalation_trigger: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    last_message_at: Mapped[datetime] = mapped_column(index=True)
    chat_type: Mapped[str | None] = mapped_column(String(16))  # a ChatType value; NULL before 0012
    asker_id: Mapped[str | None] = mapped_column(String(255))  # who opened it; NULL before 0012


class Turn(EngineBase):
    __tablename__ = "turns"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # threads.id (not the platform's thread id)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    asker_id: Mapped[str] = mapped_column(String(255))
    asker_name: Mapped[str] = mapped_column(String(255))
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    reasoning: Mapped[str] = mapped_column(Text)
    citations: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    outcome: Mapped[str] = mapped_column(String(32))  # an Outcome value
    language: Mapped[str] = mapped_column(String(16))
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    cached_tokens: Mapped[int | None] = mapped_column(Integer)
    retrieval_s: Mapped[float] = mapped_column(Float)
    first_token_s: Mapped[float | None] = mapped_column(Float)
    first_visible_s: Mapped[float | None] = mapped_column(Float)
    total_s: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(index=True)
    # what goes back to the model in later turns: the user turn exactly as sent (with its
    # passages) and the model's own words (no notices); NULL when the model was not asked
    prompt: Mapped[str | None] = mapped_column(Text)
    model_text: Mapped[str | None] = mapped_column(Text)


class ProcessedEvent(EngineBase):
    """One row per platform message taken; the unique key is the cross-replica dedupe."""

    __tablename__ = "processed_events"
    __table_args__ = (UniqueConstraint("platform", "message_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    message_id: Mapped[str] = mapped_column(String(255))
    thread_key: Mapped[str] = mapped_column(Text)  # JSON [platform, tenant, chat_id, thread_id]
    received_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    question: Mapped[str | None] = mapped_column(Text)  # for the audit of a turn that never ended
    asker_id: Mapped[str | None] = mapped_column(String(255))
    # the serving process answering it (replicas.id; NULL from the CLI): when that replica's
    # heartbeat lapses, another one takes the turn over (engine/store/replicas.py)
    replica: Mapped[str | None] = mapped_column(String(64), index=True)


class ReplicaState(StrEnum):
    ALIVE = "alive"  # beating
    DEAD = "dead"  # its heartbeat lapsed: another replica took its unfinished turns over
    STOPPED = "stopped"  # shut down; what it left unfinished is taken over at once


class Replica(EngineBase):
    """One serving process's heartbeat (engine/store/replicas.py): a new row each time it starts, or
    comes back after it was declared dead."""

    __tablename__ = "replicas"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]
    beats: Mapped[int] = mapped_column(Integer)  # what the others watch: it grows while alive
    state: Mapped[str] = mapped_column(String(16), index=True)  # a ReplicaState value
    ended_at: Mapped[datetime | None]  # declared dead, or stopped
    ended_by: Mapped[str | None] = mapped_column(String(64))  # the replica that declared it


class Feedback(EngineBase):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("turn_id", "user_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    turn_id: Mapped[int] = mapped_column(ForeignKey("turns.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(String(8))  # a FeedbackValue value
    comment: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]


class Handoff(EngineBase):
    """One escalation of a thread, from the notice to its resolution: the SLA and figures rows."""

    __tablename__ = "handoffs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    trigger: Mapped[str] = mapped_column(String(64))
    question: Mapped[str] = mapped_column(Text)
    escalated_at: Mapped[datetime] = mapped_column(index=True)
    taken_at: Mapped[datetime | None]
    taken_by: Mapped[str | None] = mapped_column(String(255))
    responded_at: Mapped[datetime | None]  # the first message a person wrote in the thread
    answer: Mapped[str] = mapped_column(Text)  # what the agents wrote, for the learning loop
    renotified: Mapped[int] = mapped_column(Integer)  # reminder levels sent (0, 1, 2)
    resolved_at: Mapped[datetime | None] = mapped_column(index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(255))  # asker | console:NAME | idle


class CandidateStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"


class FaqCandidate(EngineBase):
    """A question a person answered, proposed for the managed FAQ (approved in the console)."""

    __tablename__ = "faq_candidates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"))
    handoff_id: Mapped[int] = mapped_column(
        ForeignKey("handoffs.id", ondelete="CASCADE"), unique=True
    )
    question: Mapped[str] = mapped_column(Text)
    answer: Mapped[str] = mapped_column(Text)
    answered_by: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), index=True)  # a CandidateStatus value
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(255))


class ThreadAttachment(EngineBase):
    """An image or file sent in a thread and what was read from it: later turns of the same
    thread use and cite it, no other thread does; purged with the thread (retention)."""

    __tablename__ = "thread_attachments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    thread_id: Mapped[int] = mapped_column(ForeignKey("threads.id", ondelete="CASCADE"), index=True)
    message_id: Mapped[str] = mapped_column(String(255))
    name: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))  # image | pdf | docx | faq | html | text …
    mime: Mapped[str] = mapped_column(String(128))  # decided from the bytes; "" when unread
    size: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)  # what was read ("" when it could not be)
    error: Mapped[str] = mapped_column(Text)  # why it could not be read ("" when it was)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # kept for the console, when small
    # kept in the object store instead of `data` ([files] store = "s3"): its key there
    stored_key: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(index=True)
