"""`ConversationStore`: threads, turns, dedupe and feedback in SQLite or PostgreSQL.

Every method is one short transaction and returns frozen dataclasses, never ORM objects.
Race safety comes from unique constraints (dedupe, thread get-or-create, feedback upsert), so it
holds across replicas, not only across tasks.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import delete, distinct, event, func, insert, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError, IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

from engine.handoffs import CandidateRecord, Figures, HandoffRecord, ThreadSummary, figures
from engine.messages import Answer, Citation, Inbound, Outcome, ThreadKey, Timings, Usage
from engine.tables import (
    CandidateStatus,
    FaqCandidate,
    Feedback,
    FeedbackValue,
    Handoff,
    ProcessedEvent,
    Thread,
    ThreadState,
    Turn,
    utcnow,
)

__all__ = [
    "CandidateRecord",
    "Claim",
    "ConversationStore",
    "Figures",
    "HandoffRecord",
    "ThreadRecord",
    "ThreadSummary",
    "TurnRecord",
    "UnansweredEvent",
]

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection that sat unused this long is pinged before use (see
# create_engine); a busy connection is not, as SQLAlchemy's pool_pre_ping would (three round
# trips on asyncpg for every checkout).
IDLE_PING_SECONDS = 10.0


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


@dataclass(frozen=True, slots=True)
class Claim:
    """A newly claimed message's thread and the thread's last turns (oldest first)."""

    thread: ThreadRecord
    history: tuple[TurnRecord, ...]


@dataclass(frozen=True, slots=True)
class UnansweredEvent:
    """A message that was claimed but whose turn was never persisted (e.g. a crash mid-answer)."""

    platform: str
    message_id: str
    thread_key: ThreadKey
    received_at: datetime


class ConversationStore:
    """The engine's relational storage; the schema must exist (`bot.db.upgrade`)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._dialect = engine.dialect.name
        if self._dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {self._dialect!r}: use sqlite+aiosqlite:///PATH"
                " or postgresql+asyncpg://USER@HOST:PORT/DB"
            )

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        echo: bool = False,
        connect_args: Mapping[str, Any] | None = None,
        idle_ping: float = IDLE_PING_SECONDS,
        pool_size: int = 5,
    ) -> ConversationStore:
        """Create the engine for `url` (sqlite+aiosqlite or postgresql+asyncpg)."""
        return cls(
            create_engine(
                url,
                echo=echo,
                connect_args=connect_args,
                idle_ping=idle_ping,
                pool_size=pool_size,
            )
        )

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def close(self) -> None:
        await self._engine.dispose()

    # -- dedupe ---------------------------------------------------------------------------

    async def claim_event(self, platform: str, message_id: str, thread_key: ThreadKey) -> bool:
        """Record a platform message; True only for the one caller, across replicas, that got it."""
        values = {
            "platform": platform,
            "message_id": message_id,
            "thread_key": _encode_key(thread_key),
            "received_at": utcnow(),
        }
        return await self._insert_unique(ProcessedEvent, values, ["platform", "message_id"])

    async def claim(
        self, platform: str, message_id: str, thread_key: ThreadKey, history_turns: int
    ) -> Claim | None:
        """`claim_event`, `thread` and `history` in one transaction, the hot path of every
        message; None when another caller (or replica) already claimed the message."""
        now = utcnow()
        event = {
            "platform": platform,
            "message_id": message_id,
            "thread_key": _encode_key(thread_key),
            "received_at": now,
        }
        claim = (
            self._insert(ProcessedEvent)
            .values(event)
            .on_conflict_do_nothing(index_elements=["platform", "message_id"])
            .returning(ProcessedEvent.id)
        )
        # Core statements on a plain connection: this runs for every message, and ORM sessions
        # cost more CPU than the statements themselves
        async with self._engine.begin() as conn:
            if await conn.scalar(claim) is None:
                return None
            row = (await conn.execute(_thread_query(thread_key))).first()
            if row is None:  # a concurrent creator may win; either way the row exists after
                await conn.execute(self._new_thread(thread_key, now))
                row = (await conn.execute(_thread_query(thread_key))).first()
            if row is None:  # pragma: no cover - only if the row was deleted in between
                raise LookupError(f"thread {thread_key} vanished right after it was created")
            turns = (
                (await conn.execute(_history_query(row.id, history_turns))).all()
                if history_turns > 0
                else []
            )
            return Claim(_thread_record(row), tuple(_turn_record(t) for t in reversed(turns)))

    async def mark_answered(self, platform: str, message_id: str) -> bool:
        """Set answered_at on a claimed event (add_turn does this itself for the turn's message).

        True when this call set it: of several replicas recovering the same event, one wins."""
        async with self._sessions.begin() as session:
            result = await session.execute(_answered(platform, message_id))
        return bool(getattr(result, "rowcount", 0))

    async def purge(self, before: datetime) -> dict[str, int]:
        """Delete what the retention policy no longer keeps: threads quiet since before `before`
        (with their turns, feedback, handoffs and FAQ candidates), older turns of threads still
        in use, and old dedupe rows. Returns how many rows of each went."""
        if before.tzinfo is None:
            raise ValueError("before is a naive datetime: pass an aware one (UTC)")
        async with self._sessions.begin() as session:
            quiet = select(Thread.id).where(Thread.last_message_at < before)
            old_turns = select(Turn.id).where(
                or_(Turn.created_at < before, Turn.thread_id.in_(quiet))
            )
            feedback = await session.execute(
                delete(Feedback).where(Feedback.turn_id.in_(old_turns))
            )
            turns = await session.execute(delete(Turn).where(Turn.id.in_(old_turns)))
            await session.execute(delete(FaqCandidate).where(FaqCandidate.thread_id.in_(quiet)))
            await session.execute(delete(Handoff).where(Handoff.thread_id.in_(quiet)))
            threads = await session.execute(delete(Thread).where(Thread.last_message_at < before))
            events = await session.execute(
                delete(ProcessedEvent).where(ProcessedEvent.received_at < before)
            )
        return {
            "threads": _count(threads),
            "turns": _count(turns),
            "feedback": _count(feedback),
            "events": _count(events),
        }

    async def unanswered_events(
        self, older_than: datetime, newer_than: datetime
    ) -> list[UnansweredEvent]:
        """Events received in [newer_than, older_than) and never answered, oldest first."""
        for name, value in (("older_than", older_than), ("newer_than", newer_than)):
            if value.tzinfo is None:
                raise ValueError(f"{name} is a naive datetime: pass an aware one (UTC)")
        stmt = (
            select(ProcessedEvent)
            .where(
                ProcessedEvent.answered_at.is_(None),
                ProcessedEvent.received_at < older_than,
                ProcessedEvent.received_at >= newer_than,
            )
            .order_by(ProcessedEvent.received_at, ProcessedEvent.id)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            UnansweredEvent(r.platform, r.message_id, _decode_key(r.thread_key), r.received_at)
            for r in rows
        ]

    # -- threads --------------------------------------------------------------------------

    async def thread(self, key: ThreadKey) -> ThreadRecord:
        """The thread for `key`, created in state open if it does not exist yet."""
        found = await self._find_thread(key)
        if found is not None:
            return found
        # A concurrent creator may win; either way the row exists afterwards.
        async with self._sessions.begin() as session:
            await session.execute(self._new_thread(key, utcnow()))
        found = await self._find_thread(key)
        if found is None:  # pragma: no cover - only if the row was deleted in between
            raise LookupError(f"thread {key} vanished right after it was created")
        return found

    async def thread_by_id(self, thread_id: int) -> ThreadRecord | None:
        """The thread with this row id, if any."""
        async with self._sessions() as session:
            row = await session.get(Thread, thread_id)
            return None if row is None else _thread_record(row)

    async def set_state(
        self,
        thread_id: int,
        state: ThreadState,
        *,
        taken_by: str | None = None,
        trigger: str | None = None,
        question: str = "",
        by: str = "",
        now: datetime | None = None,
    ) -> ThreadRecord:
        """Move a thread to `state`; taken_by and escalation_trigger become the given values.

        The handoff bookkeeping rides in the same transaction: escalating opens a handoff (with
        `question`), taking it over stamps it, resolving closes it (`by`: asker, console:NAME,
        idle), and a thread a person answered becomes an FAQ candidate when it is resolved."""
        state = ThreadState(state)
        now = now or utcnow()
        async with self._sessions.begin() as session:
            row = await session.get(Thread, thread_id)
            if row is None:
                raise LookupError(f"no thread with id {thread_id}")
            before = ThreadState(row.state)
            row.state = state.value
            row.state_changed_at = now
            row.taken_by = taken_by
            row.escalation_trigger = trigger
            await self._track_handoff(session, row, before, state, question, by, now)
            await session.flush()
            return _thread_record(row)

    async def _track_handoff(
        self,
        session: Any,
        thread: Thread,
        before: ThreadState,
        state: ThreadState,
        question: str,
        by: str,
        now: datetime,
    ) -> None:
        open_handoff = await session.scalar(
            select(Handoff)
            .where(Handoff.thread_id == thread.id, Handoff.resolved_at.is_(None))
            .order_by(Handoff.id.desc())
            .limit(1)
        )
        if state is ThreadState.ESCALATED:
            if open_handoff is not None:  # a stale one (should not happen): close it
                open_handoff.resolved_at, open_handoff.resolved_by = now, "superseded"
            session.add(
                Handoff(
                    thread_id=thread.id,
                    trigger=thread.escalation_trigger or "",
                    question=question,
                    escalated_at=now,
                    answer="",
                    renotified=0,
                )
            )
        elif open_handoff is None:
            return
        elif state is ThreadState.HUMAN:
            open_handoff.taken_at = open_handoff.taken_at or now
            open_handoff.taken_by = thread.taken_by or open_handoff.taken_by
        elif state is ThreadState.RESOLVED:
            open_handoff.resolved_at, open_handoff.resolved_by = now, by or "asker"
            if (
                before is ThreadState.HUMAN
                and open_handoff.answer.strip()
                and open_handoff.question
            ):
                session.add(
                    FaqCandidate(
                        thread_id=thread.id,
                        handoff_id=open_handoff.id,
                        question=open_handoff.question,
                        answer=open_handoff.answer.strip(),
                        answered_by=open_handoff.taken_by or "",
                        status=CandidateStatus.PENDING.value,
                        created_at=now,
                    )
                )

    # -- handoffs -------------------------------------------------------------------------

    async def record_human_message(
        self, thread_id: int, agent: str, text: str, *, now: datetime | None = None
    ) -> HandoffRecord | None:
        """A person wrote in a handed-off thread: the first response time, and their words for
        the learning loop. None when the thread has no open handoff."""
        now = now or utcnow()
        async with self._sessions.begin() as session:
            row = await session.scalar(
                select(Handoff)
                .where(Handoff.thread_id == thread_id, Handoff.resolved_at.is_(None))
                .order_by(Handoff.id.desc())
                .limit(1)
            )
            if row is None:
                return None
            row.responded_at = row.responded_at or now
            row.taken_by = row.taken_by or agent
            if text.strip():
                row.answer = f"{row.answer}\n\n{text.strip()}".strip()
            await session.execute(
                update(Thread).where(Thread.id == thread_id).values(last_message_at=now)
            )
            handoff_id = row.id
        return await self.handoff_by_id(handoff_id)

    async def handoff(self, thread_id: int) -> HandoffRecord | None:
        """The thread's latest handoff, if it ever had one."""
        stmt = (
            _handoffs_query()
            .where(Handoff.thread_id == thread_id)
            .order_by(Handoff.id.desc())
            .limit(1)
        )
        return next(iter(await self._handoffs(stmt)), None)

    async def handoff_by_id(self, handoff_id: int) -> HandoffRecord | None:
        return next(
            iter(await self._handoffs(_handoffs_query().where(Handoff.id == handoff_id))), None
        )

    async def handoffs(self, *, resolved: bool, limit: int = 100) -> list[HandoffRecord]:
        """Open handoffs, oldest escalation first; or resolved ones, latest resolution first."""
        if resolved:
            stmt = _handoffs_query().where(Handoff.resolved_at.is_not(None))
            stmt = stmt.order_by(Handoff.resolved_at.desc(), Handoff.id.desc())
        else:
            stmt = _handoffs_query().where(Handoff.resolved_at.is_(None))
            stmt = stmt.order_by(Handoff.escalated_at, Handoff.id)
        return await self._handoffs(stmt.limit(limit))

    async def unanswered_handoffs(self, below_level: int) -> list[HandoffRecord]:
        """Open handoffs nobody took or answered, with fewer than `below_level` reminders sent."""
        stmt = _handoffs_query().where(
            Handoff.resolved_at.is_(None),
            Handoff.taken_at.is_(None),
            Handoff.responded_at.is_(None),
            Handoff.renotified < below_level,
            Thread.state == ThreadState.ESCALATED.value,
        )
        return await self._handoffs(stmt.order_by(Handoff.escalated_at, Handoff.id))

    async def mark_renotified(self, handoff_id: int, was: int, level: int) -> bool:
        """Move the reminder level from `was` to `level`; True only for the one caller (of
        several replicas) that moved it."""
        stmt = (
            update(Handoff)
            .where(Handoff.id == handoff_id, Handoff.renotified == was)
            .values(renotified=level)
        )
        async with self._sessions.begin() as session:
            result = await session.execute(stmt)
        return bool(getattr(result, "rowcount", 0))

    async def idle_threads(self, before: datetime, limit: int = 500) -> list[ThreadRecord]:
        """Threads not resolved whose last message is older than `before`."""
        stmt = (
            select(Thread)
            .where(Thread.state != ThreadState.RESOLVED.value, Thread.last_message_at < before)
            .order_by(Thread.last_message_at)
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_thread_record(r) for r in rows]

    async def figures(self, since: datetime, until: datetime) -> Figures:
        """Escalation rate, time to first human response, resolution time, who resolved."""
        window = (Turn.created_at >= since, Turn.created_at < until)
        escalated_in = (Handoff.escalated_at >= since, Handoff.escalated_at < until)
        async with self._sessions() as session:
            active = await session.scalar(
                select(func.count(distinct(Turn.thread_id))).where(*window)
            )
            escalated = await session.scalar(
                select(func.count(distinct(Handoff.thread_id))).where(*escalated_in)
            )
            bot = await session.scalar(
                select(func.count(Thread.id)).where(
                    Thread.state == ThreadState.RESOLVED.value,
                    Thread.state_changed_at >= since,
                    Thread.state_changed_at < until,
                    ~Thread.id.in_(select(Handoff.thread_id)),
                )
            )
        rows = await self._handoffs(_handoffs_query().where(*escalated_in))
        return figures(
            since,
            until,
            active_threads=int(active or 0),
            escalated_threads=int(escalated or 0),
            handoffs=rows,
            resolved_without_handoff=int(bot or 0),
        )

    async def _handoffs(self, stmt: Any) -> list[HandoffRecord]:
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [_handoff_record(h, t) for h, t in rows]

    # -- conversations (the console) ------------------------------------------------------

    async def search_threads(self, text: str = "", limit: int = 50) -> list[ThreadSummary]:
        """Threads with a turn whose question or answer contains `text`, latest first."""
        matching = select(Turn.thread_id)
        if text.strip():
            pattern = f"%{_escape_like(text.strip())}%"
            matching = matching.where(
                or_(
                    Turn.question.ilike(pattern, escape="\\"),
                    Turn.answer.ilike(pattern, escape="\\"),
                )
            )
        counts = (
            select(Turn.thread_id, func.count(Turn.id).label("turns"), func.min(Turn.id).label("first"),
                   func.max(Turn.id).label("last"))
            .group_by(Turn.thread_id)
            .subquery()
        )  # fmt: skip
        first, last = Turn.__table__.alias("first"), Turn.__table__.alias("last")
        stmt = (
            select(Thread, counts.c.turns, first.c.question, last.c.outcome)
            .join(counts, counts.c.thread_id == Thread.id)
            .join(first, first.c.id == counts.c.first)
            .join(last, last.c.id == counts.c.last)
            .where(Thread.id.in_(matching))
            .order_by(Thread.last_message_at.desc(), Thread.id.desc())
            .limit(limit)
        )
        async with self._sessions() as session:
            rows = (await session.execute(stmt)).all()
        return [
            ThreadSummary(
                id=t.id,
                key=ThreadKey(t.platform, t.tenant, t.chat_id, t.thread_id),
                state=ThreadState(t.state),
                turns=int(n),
                first_question=q,
                last_outcome=o,
                last_message_at=t.last_message_at,
            )
            for t, n, q, o in rows
        ]

    async def feedback_for(self, turn_ids: Sequence[int]) -> dict[int, list[tuple[str, str, str]]]:
        """turn id → [(user id, up|down, comment)] for the given turns."""
        if not turn_ids:
            return {}
        stmt = select(Feedback).where(Feedback.turn_id.in_(list(turn_ids))).order_by(Feedback.id)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        found: dict[int, list[tuple[str, str, str]]] = {}
        for r in rows:
            found.setdefault(r.turn_id, []).append((r.user_id, r.value, r.comment))
        return found

    # -- FAQ candidates (the learning loop) -----------------------------------------------

    async def candidates(
        self, status: CandidateStatus | None = None, limit: int = 100
    ) -> list[CandidateRecord]:
        stmt = select(FaqCandidate).order_by(FaqCandidate.id.desc()).limit(limit)
        if status is not None:
            stmt = stmt.where(FaqCandidate.status == CandidateStatus(status).value)
        async with self._sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_candidate_record(r) for r in rows]

    async def decide_candidate(
        self, candidate_id: int, status: CandidateStatus, by: str, *, answer: str | None = None
    ) -> CandidateRecord | None:
        """Approve or reject a pending candidate (optionally with an edited answer); None when it
        is not pending any more (another agent decided first) or does not exist."""
        values: dict[str, Any] = {
            "status": CandidateStatus(status).value,
            "decided_at": utcnow(),
            "decided_by": by,
        }
        if answer is not None and answer.strip():
            values["answer"] = answer.strip()
        stmt = (
            update(FaqCandidate)
            .where(
                FaqCandidate.id == candidate_id,
                FaqCandidate.status == CandidateStatus.PENDING.value,
            )
            .values(values)
        )
        async with self._sessions.begin() as session:
            result = await session.execute(stmt)
            if not getattr(result, "rowcount", 0):
                return None
            row = await session.get(FaqCandidate, candidate_id)
            assert row is not None
            await session.refresh(row)
            return _candidate_record(row)

    # -- turns ----------------------------------------------------------------------------

    async def history(self, thread_id: int, max_turns: int) -> list[TurnRecord]:
        """The last `max_turns` turns of a thread, oldest first."""
        if max_turns <= 0:
            return []
        async with self._engine.connect() as conn:
            rows = (await conn.execute(_history_query(thread_id, max_turns))).all()
        return [_turn_record(r) for r in reversed(rows)]

    async def add_turn(self, thread_id: int, inbound: Inbound, answer: Answer) -> int:
        """Persist a question and its answer and mark the inbound event answered; the turn id."""
        now = utcnow()
        values = {
            "thread_id": thread_id,
            "message_id": inbound.message_id,
            "asker_id": inbound.sender.id,
            "asker_name": inbound.sender.display_name,
            "question": inbound.text,
            "answer": answer.text,
            "reasoning": answer.reasoning,
            "citations": [dataclasses.asdict(c) for c in answer.citations],
            "outcome": Outcome(answer.outcome).value,
            "language": answer.language,
            "prompt_tokens": answer.usage.prompt_tokens,
            "completion_tokens": answer.usage.completion_tokens,
            "cached_tokens": answer.usage.cached_tokens,
            "retrieval_s": answer.timings.retrieval,
            "first_token_s": answer.timings.first_token,
            "first_visible_s": answer.timings.first_visible,
            "total_s": answer.timings.total,
            "created_at": now,
        }
        async with self._engine.begin() as conn:  # Core, like claim: once per message
            turn_id = await conn.scalar(insert(Turn).values(values).returning(Turn.id))
            await conn.execute(
                update(Thread).where(Thread.id == thread_id).values(last_message_at=now)
            )
            await conn.execute(_answered(inbound.platform, inbound.message_id, now))
        if turn_id is None:  # pragma: no cover - INSERT … RETURNING always returns the id
            raise LookupError("the new turn's id did not come back")
        return int(turn_id)

    async def turn(self, turn_id: int) -> TurnRecord | None:
        async with self._sessions() as session:
            row = await session.get(Turn, turn_id)
            return None if row is None else _turn_record(row)

    # -- feedback -------------------------------------------------------------------------

    async def add_feedback(
        self, turn_id: int, user_id: str, value: FeedbackValue | str, comment: str = ""
    ) -> None:
        """Record a user's up/down on a turn; a second click by the same user replaces the first."""
        values = {
            "turn_id": turn_id,
            "user_id": user_id,
            "value": FeedbackValue(value).value,
            "comment": comment,
            "created_at": utcnow(),
        }
        changes = {k: values[k] for k in ("value", "comment", "created_at")}
        stmt = self._insert(Feedback).values(values)
        stmt = stmt.on_conflict_do_update(index_elements=["turn_id", "user_id"], set_=changes)
        try:
            async with self._sessions.begin() as session:
                await session.execute(stmt)
        except IntegrityError as e:
            if await self.turn(turn_id) is None:
                raise LookupError(f"no turn with id {turn_id}") from e
            raise

    async def feedback(self, turn_id: int) -> dict[str, tuple[FeedbackValue, str]]:
        """user id → (value, comment) for one turn."""
        async with self._sessions() as session:
            rows = (
                await session.scalars(select(Feedback).where(Feedback.turn_id == turn_id))
            ).all()
        return {r.user_id: (FeedbackValue(r.value), r.comment) for r in rows}

    # -- helpers --------------------------------------------------------------------------

    def _insert(self, model: Any) -> Any:
        if self._dialect == "postgresql":
            return postgresql.insert(model)
        return sqlite.insert(model)

    def _new_thread(self, key: ThreadKey, now: datetime) -> Any:
        """INSERT an open thread for `key` unless it exists."""
        values = {
            "platform": key.platform,
            "tenant": key.tenant,
            "chat_id": key.chat_id,
            "thread_id": key.thread_id,
            "state": ThreadState.OPEN.value,
            "state_changed_at": now,
            "created_at": now,
            "last_message_at": now,
        }
        return (
            self._insert(Thread)
            .values(values)
            .on_conflict_do_nothing(index_elements=["platform", "tenant", "chat_id", "thread_id"])
        )

    async def _insert_unique(
        self, model: type[Thread] | type[ProcessedEvent], values: dict[str, Any], key: list[str]
    ) -> bool:
        """Insert unless a row with the same unique `key` exists; True when this call inserted."""
        stmt = self._insert(model).values(values).on_conflict_do_nothing(index_elements=key)
        async with self._sessions.begin() as session:
            inserted = await session.scalar(stmt.returning(model.id))
        return inserted is not None

    async def _find_thread(self, key: ThreadKey) -> ThreadRecord | None:
        async with self._engine.connect() as conn:
            row = (await conn.execute(_thread_query(key))).first()
        return None if row is None else _thread_record(row)


def create_engine(
    url: str,
    *,
    echo: bool = False,
    connect_args: Mapping[str, Any] | None = None,
    idle_ping: float = IDLE_PING_SECONDS,
    pool_size: int = 5,
) -> AsyncEngine:
    """An async engine for `url`; for SQLite: parent directory created, WAL, busy timeout, FKs on.

    `connect_args` go to the driver, e.g. `{"server_settings": {"search_path": "teambot"}}`.
    For PostgreSQL, `pool_size` connections stay open (10 more while busy); a connection idle for `idle_ping` seconds is pinged before it is handed out
    and replaced when the server has dropped it (a restart, a failover, an idle timeout).
    """
    parsed = make_url(url)
    args = dict(connect_args or {})
    if parsed.get_backend_name() != "sqlite":
        # Connections above pool_size are closed when returned: a pool too small for the load
        # opens and closes connections all the time.
        server = create_async_engine(
            url, echo=echo, connect_args=args, pool_size=pool_size, max_overflow=10
        )
        _ping_when_idle(server, idle_ping)
        return server
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # one shared connection, or every connection would see its own empty database
        eng = create_async_engine(url, echo=echo, poolclass=StaticPool, connect_args=args)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        eng = create_async_engine(url, echo=echo, connect_args=args)

    @event.listens_for(eng.sync_engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        # WAL: readers never block the writer; busy_timeout: writers queue instead of failing
        # with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return eng


def _ping_when_idle(server: AsyncEngine, idle: float) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool `idle` seconds."""

    @event.listens_for(server.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(server.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            server.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # the pool discards this connection and hands out a fresh one
            raise DisconnectionError(f"a pooled connection was dead: {error}") from error


def _thread_query(key: ThreadKey) -> Any:
    return select(Thread.__table__).where(
        Thread.platform == key.platform,
        Thread.tenant == key.tenant,
        Thread.chat_id == key.chat_id,
        Thread.thread_id == key.thread_id,
    )


def _history_query(thread_id: int, max_turns: int) -> Any:
    """A thread's last `max_turns` turns, newest first."""
    return (
        select(Turn.__table__)
        .where(Turn.thread_id == thread_id)
        .order_by(Turn.created_at.desc(), Turn.id.desc())
        .limit(max_turns)
    )


def _answered(platform: str, message_id: str, when: datetime | None = None) -> Any:
    return (
        update(ProcessedEvent)
        .where(
            ProcessedEvent.platform == platform,
            ProcessedEvent.message_id == message_id,
            ProcessedEvent.answered_at.is_(None),
        )
        .values(answered_at=when or utcnow())
    )


def _handoffs_query() -> Any:
    return select(Handoff, Thread).join(Thread, Thread.id == Handoff.thread_id)


def _handoff_record(h: Handoff, t: Thread) -> HandoffRecord:
    return HandoffRecord(
        id=h.id,
        thread_id=h.thread_id,
        key=ThreadKey(t.platform, t.tenant, t.chat_id, t.thread_id),
        state=ThreadState(t.state),
        trigger=h.trigger,
        question=h.question,
        escalated_at=h.escalated_at,
        taken_at=h.taken_at,
        taken_by=h.taken_by,
        responded_at=h.responded_at,
        answer=h.answer,
        renotified=h.renotified,
        resolved_at=h.resolved_at,
        resolved_by=h.resolved_by,
    )


def _candidate_record(r: FaqCandidate) -> CandidateRecord:
    return CandidateRecord(
        id=r.id,
        thread_id=r.thread_id,
        handoff_id=r.handoff_id,
        question=r.question,
        answer=r.answer,
        answered_by=r.answered_by,
        status=CandidateStatus(r.status),
        created_at=r.created_at,
        decided_at=r.decided_at,
        decided_by=r.decided_by,
    )


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _encode_key(key: ThreadKey) -> str:
    return json.dumps([key.platform, key.tenant, key.chat_id, key.thread_id], ensure_ascii=False)


def _decode_key(text: str) -> ThreadKey:
    platform, tenant, chat_id, thread_id = json.loads(text)
    return ThreadKey(platform, tenant, chat_id, thread_id)


def _thread_record(row: Any) -> ThreadRecord:
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
    )


_CITATION_FIELDS = frozenset(f.name for f in dataclasses.fields(Citation))


def _citations(raw: Sequence[dict[str, Any]] | None) -> tuple[Citation, ...]:
    return tuple(
        Citation(**{k: v for k, v in c.items() if k in _CITATION_FIELDS}) for c in raw or ()
    )


def _turn_record(row: Any) -> TurnRecord:
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
        citations=_citations(row.citations),
        usage=Usage(row.prompt_tokens, row.completion_tokens, row.cached_tokens),
        timings=Timings(row.retrieval_s, row.first_token_s, row.first_visible_s, row.total_s),
    )


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
