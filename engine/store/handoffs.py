"""The store's handoff side: escalation bookkeeping, SLA queries, the agents' console and the
FAQ candidates of the learning loop. `HandoffStore` shares the database of a ConversationStore
(engine/store/conversations.py), which holds one as `store.handoffs`; `track_handoff` runs inside the
ConversationStore's own state change, in its transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import distinct, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from engine.messages import ThreadKey
from engine.store.database import Database
from engine.store.handoff_records import (
    CandidateRecord,
    Figures,
    HandoffRecord,
    ThreadSummary,
    figures,
)
from engine.store.records import ThreadRecord, thread_record
from engine.store.tables import (
    CandidateStatus,
    FaqCandidate,
    Feedback,
    Handoff,
    Thread,
    ThreadState,
    Turn,
    utcnow,
)


class HandoffStore:
    """Handoffs, the console's thread queries and the FAQ candidates, on a shared `Database`."""

    def __init__(self, database: Database) -> None:
        self._sessions = database.sessions
        self._engine = database.engine

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

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
        return await self._by_id(handoff_id)

    async def latest(self, thread_id: int) -> HandoffRecord | None:
        """The thread's latest handoff, if it ever had one."""
        stmt = (
            _handoffs_query()
            .where(Handoff.thread_id == thread_id)
            .order_by(Handoff.id.desc())
            .limit(1)
        )
        return next(iter(await self._handoffs(stmt)), None)

    async def _by_id(self, handoff_id: int) -> HandoffRecord | None:
        return next(
            iter(await self._handoffs(_handoffs_query().where(Handoff.id == handoff_id))), None
        )

    async def listed(self, *, resolved: bool, limit: int = 100) -> list[HandoffRecord]:
        """Open handoffs, oldest escalation first; or resolved ones, latest resolution first."""
        if resolved:
            stmt = _handoffs_query().where(Handoff.resolved_at.is_not(None))
            stmt = stmt.order_by(Handoff.resolved_at.desc(), Handoff.id.desc())
        else:
            stmt = _handoffs_query().where(Handoff.resolved_at.is_(None))
            stmt = stmt.order_by(Handoff.escalated_at, Handoff.id)
        return await self._handoffs(stmt.limit(limit))

    async def unanswered(self, below_level: int) -> list[HandoffRecord]:
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
        return [thread_record(r) for r in rows]

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
            select(
                Thread,
                counts.c.turns,
                first.c.question,
                last.c.outcome,
                first.c.asker_name,
                first.c.asker_id,
            )
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
                asker=name or asker_id or "",
            )
            for t, n, q, o, name, asker_id in rows
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


async def track_handoff(
    session: AsyncSession,
    thread: Thread,
    before: ThreadState,
    state: ThreadState,
    question: str,
    by: str,
    now: datetime,
) -> None:
    """The handoff rows that go with a thread's state change, in the same `session`: escalating
    opens one, a person taking over stamps it, resolving closes it and turns what the person
    answered into an FAQ candidate."""
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
        if before is ThreadState.HUMAN and open_handoff.answer.strip() and open_handoff.question:
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
