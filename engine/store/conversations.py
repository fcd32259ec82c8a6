"""`ConversationStore`: threads, turns, dedupe and feedback in SQLite or PostgreSQL.

Every method is one short transaction and returns frozen records (engine/store/records.py), never ORM
objects. The handoff and console queries live in engine/store/handoffs.py (`store.handoffs`),
retention and recovery in engine/store/upkeep.py (`store.upkeep`), a thread's attachments in
engine/store/attachments.py (`store.attachments`), all on the same database; the engine and the shared session maker in engine/store/database.py.
Race safety comes from unique constraints (dedupe, thread get-or-create, feedback upsert), so it
holds across replicas, not only across tasks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from datetime import datetime
from functools import partial
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from engine import clean
from engine.messages import Answer, ChatType, Inbound, Outcome, ThreadKey
from engine.store.attachments import AttachmentStore
from engine.store.database import IDLE_PING_SECONDS, Database, create_engine
from engine.store.handoff_records import CandidateRecord, Figures, HandoffRecord, ThreadSummary
from engine.store.handoffs import HandoffStore, track_handoff
from engine.store.records import (
    Claim,
    ThreadRecord,
    TurnRecord,
    UnansweredEvent,
    encode_key,
    thread_record,
    turn_record,
)
from engine.store.replicas import Replicas, TakenOver, fence_on
from engine.store.tables import (
    Feedback,
    FeedbackValue,
    ProcessedEvent,
    Thread,
    ThreadState,
    Turn,
    utcnow,
)
from engine.store.upkeep import Upkeep

__all__ = [
    "CandidateRecord",
    "Claim",
    "ConversationStore",
    "Figures",
    "HandoffRecord",
    "HandoffStore",
    "ThreadRecord",
    "ThreadSummary",
    "TurnRecord",
    "UnansweredEvent",
]


# Marks an assistant turn a person wrote, so the model does not take it for its own words.
_HUMAN = "(a colleague replied) "


class ConversationStore:
    """The engine's relational storage; the schema must exist (`bot.db.upgrade`).

    `handoffs` holds the handoff and console queries, `upkeep` retention and recovery, on the
    same database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._database = Database(engine)
        self._engine = engine
        self._sessions = self._database.sessions
        self._insert = self._database.insert
        self.handoffs = HandoffStore(self._database)
        self.upkeep = Upkeep(self._database)
        self.attachments = AttachmentStore(self._database)
        self.replicas = Replicas(self._database)  # heartbeats, handover, the answer's fence
        self._claim: Any = None
        self._open_thread: Any = None

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
        await self._database.close()

    # -- dedupe ---------------------------------------------------------------------------

    async def claim_event(self, platform: str, message_id: str, thread_key: ThreadKey) -> bool:
        """Record a platform message; True only for the one caller, across replicas, that got it."""
        values = {
            "platform": platform,
            "message_id": message_id,
            "thread_key": encode_key(thread_key),
            "received_at": utcnow(),
        }
        return await self._insert_unique(ProcessedEvent, values, ["platform", "message_id"])

    async def claim(
        self,
        platform: str,
        message_id: str,
        thread_key: ThreadKey,
        history_turns: int,
        *,
        question: str = "",
        asker: str = "",
        chat_type: ChatType | None = None,
    ) -> Claim | None:
        """`claim_event`, `thread` and `history` in one transaction, the hot path of every
        message; None when another caller (or replica) already claimed the message. `question`
        and `asker` are kept with the event for the audit of a turn that never finishes; a new
        thread keeps `asker` as its opener and `chat_type`."""
        now = utcnow()
        event = {
            "platform": platform,
            "message_id": message_id,
            "thread_key": encode_key(thread_key),
            "received_at": now,
            "question": clean.storable(question),
            "asker_id": clean.ident(asker),
            "replica": self.replicas.current,  # whose turn it is, should that replica die
        }
        new_thread = self._new_thread(thread_key, now, chat_type, asker)
        # Core statements built once, in one unit on a plain connection (`Database.unit`): this
        # runs for every message, and ORM sessions, statements built and cache-keyed anew, or a
        # thread hop per statement cost more CPU than the SQL
        return await self._database.unit(
            partial(_claim, self._claim_statement(), event, new_thread, thread_key, history_turns)
        )

    async def mark_answered(self, platform: str, message_id: str) -> bool:
        """Set answered_at on a claimed event (add_turn does this itself for the turn's message).

        True when this call set it: of several replicas recovering the same event, one wins."""
        async with self._sessions.begin() as session:
            result = await session.execute(_answered(platform, message_id))
        return bool(getattr(result, "rowcount", 0))

    # -- threads --------------------------------------------------------------------------

    async def thread(self, key: ThreadKey) -> ThreadRecord:
        """The thread for `key`, created in state open if it does not exist yet."""
        found = await self._find_thread(key)
        if found is not None:
            return found
        # A concurrent creator may win; either way the row exists afterwards.
        async with self._sessions.begin() as session:
            await session.execute(*self._new_thread(key, utcnow()))
        found = await self._find_thread(key)
        if found is None:  # pragma: no cover - only if the row was deleted in between
            raise LookupError(f"thread {key} vanished right after it was created")
        return found

    async def find_thread(self, key: ThreadKey) -> ThreadRecord | None:
        """The thread for `key` if it exists (never creates one)."""
        return await self._find_thread(key)

    async def waiting_threads(
        self,
        platform: str,
        tenant: str,
        chat_id: str,
        states: tuple[ThreadState, ...] = (ThreadState.ESCALATED,),
    ) -> list[tuple[ThreadRecord, str]]:
        """The threads of one chat in `states` (default: escalated, still waiting for a person),
        oldest first, each with its asker (who asked its first turn): where a platform has no
        threads, an agent writing in the chat takes them over, and an asker's next message
        belongs to the thread a person owns (engine/threads/lifecycle.py)."""
        asker = (
            select(Turn.asker_id)
            .where(Turn.thread_id == Thread.id)
            .order_by(Turn.id)
            .limit(1)
            .scalar_subquery()
        )
        stmt = (
            select(Thread.__table__, asker.label("asker"))
            .where(
                Thread.platform == platform,
                Thread.tenant == tenant,
                Thread.chat_id == chat_id,
                Thread.state.in_([state.value for state in states]),
            )
            .order_by(Thread.id)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [(thread_record(row), row.asker or "") for row in rows]

    async def latest_thread(
        self, platform: str, tenant: str, chat_id: str, asker: str, *, since: datetime
    ) -> ThreadRecord | None:
        """The thread `asker` opened last in this chat, if a message came in it after `since`:
        where a platform has no threads, that is the asker's conversation still going on."""
        stmt = (
            select(Thread.__table__)
            .where(
                Thread.platform == platform,
                Thread.tenant == tenant,
                Thread.chat_id == chat_id,
                Thread.asker_id == asker,
                Thread.last_message_at >= since,
            )
            .order_by(Thread.last_message_at.desc(), Thread.id.desc())
            .limit(1)
        )
        async with self._engine.connect() as conn:
            row = (await conn.execute(stmt)).first()
        return None if row is None else thread_record(row)

    async def thread_by_id(self, thread_id: int) -> ThreadRecord | None:
        """The thread with this row id, if any."""
        async with self._sessions() as session:
            row = await session.get(Thread, thread_id)
            return None if row is None else thread_record(row)

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
            await track_handoff(session, row, before, state, question, by, now)
            await session.flush()
            return thread_record(row)

    # -- turns ----------------------------------------------------------------------------

    async def history(self, thread_id: int, max_turns: int) -> list[TurnRecord]:
        """The last `max_turns` turns of a thread, oldest first."""
        if max_turns <= 0:
            return []
        async with self._engine.connect() as conn:
            rows = (
                await conn.execute(_HISTORY, {"h_thread": thread_id, "h_limit": max_turns})
            ).all()
        return [turn_record(r) for r in reversed(rows)]

    async def add_human_reply(self, thread_id: int, text: str) -> bool:
        """A person answered in the thread: their words go back to the model as the reply to
        the thread's latest turn, if the model did not answer that one (a turn it answered was
        already sent as it is). True when recorded."""
        async with self._engine.begin() as conn:
            latest = await conn.execute(
                select(Turn.id, Turn.model_text, Turn.question)
                .where(Turn.thread_id == thread_id)
                .order_by(Turn.id.desc())
                .limit(1)
            )
            row = latest.first()
            if row is None or (row.model_text and not row.model_text.startswith(_HUMAN)):
                return False
            said = f"{row.model_text}\n\n{text.strip()}" if row.model_text else f"{_HUMAN}{text}"
            await conn.execute(update(Turn).where(Turn.id == row.id).values(model_text=said))
        return True

    async def add_turn(
        self, thread_id: int, inbound: Inbound, answer: Answer, *, fence: bool = False
    ) -> int:
        """Persist a question and its answer and mark the inbound event answered; the turn id.

        With `fence`, in the same transaction, the event must still be this replica's to
        answer (`Replicas.fence`): `TakenOver`, and nothing stored, when another replica took
        the turn over (this one was counted dead meanwhile)."""
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
            "prompt": answer.prompt or None,
            "model_text": answer.model_text or None,
        }
        values = _storable(values)  # PostgreSQL refuses NUL even in what the model wrote
        answered = {"a_platform": inbound.platform, "a_message": inbound.message_id, "a_when": now}
        work = partial(_add_turn, thread_id, values, answered, fence)
        turn_id = await self._database.unit(work)  # Core, built once, like claim: every message
        if turn_id is None:  # pragma: no cover - INSERT … RETURNING always returns the id
            raise LookupError("the new turn's id did not come back")
        return turn_id

    async def turn(self, turn_id: int) -> TurnRecord | None:
        async with self._sessions() as session:
            row = await session.get(Turn, turn_id)
            return None if row is None else turn_record(row)

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

    def _new_thread(
        self, key: ThreadKey, now: datetime, chat_type: ChatType | None = None, asker: str = ""
    ) -> tuple[Any, dict[str, Any]]:
        """INSERT an open thread for `key` unless it exists: the statement (built once) and its
        parameters."""
        if self._open_thread is None:
            self._open_thread = (
                self._insert(_THREADS)
                .on_conflict_do_nothing(
                    index_elements=["platform", "tenant", "chat_id", "thread_id"]
                )
                .returning(*_THREADS.c)
            )
        values = {
            "chat_type": chat_type.value if chat_type is not None else None,
            "asker_id": clean.ident(asker) or None,
            "platform": key.platform,
            "tenant": key.tenant,
            "chat_id": key.chat_id,
            "thread_id": key.thread_id,
            "state": ThreadState.OPEN.value,
            "state_changed_at": now,
            "created_at": now,
            "last_message_at": now,
        }
        return self._open_thread, values

    def _claim_statement(self) -> Any:
        """INSERT of a processed event unless it exists, RETURNING its id (this dialect's ON
        CONFLICT), built once; the values come as parameters."""
        if self._claim is None:
            self._claim = (
                self._insert(_EVENTS)
                .on_conflict_do_nothing(index_elements=["platform", "message_id"])
                .returning(_EVENTS.c.id)
            )
        return self._claim

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
            row = (await conn.execute(_THREAD_BY_KEY, _key_params(key))).first()
        return None if row is None else thread_record(row)


def _claim(
    claim: Any,
    event: dict[str, Any],
    new_thread: tuple[Any, dict[str, Any]],
    thread_key: ThreadKey,
    history_turns: int,
    conn: Connection,
) -> Claim | None:
    """`ConversationStore.claim`'s transaction."""
    if conn.scalar(claim, event) is None:
        return None
    key = _key_params(thread_key)
    row = conn.execute(_THREAD_BY_KEY, key).first()
    if row is None:  # the new row comes back from its INSERT: it has no turns to read
        if (row := conn.execute(*new_thread).first()) is not None:
            return Claim(thread_record(row), (), new=True)
        row = conn.execute(_THREAD_BY_KEY, key).first()  # a concurrent creator won: its thread
    if row is None:  # pragma: no cover - only if the row was deleted in between
        raise LookupError(f"thread {thread_key} vanished right after it was created")
    turns = (
        conn.execute(_HISTORY, {"h_thread": row.id, "h_limit": history_turns}).all()
        if history_turns > 0
        else []
    )
    return Claim(thread_record(row), tuple(turn_record(t) for t in reversed(turns)), new=False)


def _add_turn(
    thread_id: int, values: dict[str, Any], answered: dict[str, Any], fence: bool, conn: Connection
) -> int | None:
    """`ConversationStore.add_turn`'s transaction."""
    now = answered["a_when"]
    if fence and not fence_on(conn, answered["a_platform"], answered["a_message"], now):
        raise TakenOver(f"{answered['a_platform']}/{answered['a_message']}")
    turn_id = conn.scalar(_INSERT_TURN, values)
    conn.execute(_TOUCH_THREAD, {"t_id": thread_id, "t_now": now})
    if not fence:  # the fence marked it answered already
        conn.execute(_ANSWERED, answered)
    return None if turn_id is None else int(turn_id)


# The hot path's statements, built once and run with parameters (see `claim`, `add_turn`).
_THREADS, _TURNS, _EVENTS = (cast(Table, m.__table__) for m in (Thread, Turn, ProcessedEvent))
_THREAD_BY_KEY = select(_THREADS).where(
    _THREADS.c.platform == bindparam("k_platform"),
    _THREADS.c.tenant == bindparam("k_tenant"),
    _THREADS.c.chat_id == bindparam("k_chat"),
    _THREADS.c.thread_id == bindparam("k_thread"),
)
_HISTORY = (
    select(_TURNS)
    .where(_TURNS.c.thread_id == bindparam("h_thread"))
    .order_by(_TURNS.c.created_at.desc(), _TURNS.c.id.desc())
    .limit(bindparam("h_limit"))
)
_INSERT_TURN = insert(_TURNS).returning(_TURNS.c.id)
_TOUCH_THREAD = (
    update(_THREADS)
    .where(_THREADS.c.id == bindparam("t_id"))
    .values(last_message_at=bindparam("t_now"))
)
_ANSWERED = (
    update(_EVENTS)
    .where(
        _EVENTS.c.platform == bindparam("a_platform"),
        _EVENTS.c.message_id == bindparam("a_message"),
        _EVENTS.c.answered_at.is_(None),
    )
    .values(answered_at=bindparam("a_when"))
)


def _key_params(key: ThreadKey) -> dict[str, str]:
    return {
        "k_platform": key.platform,
        "k_tenant": key.tenant,
        "k_chat": key.chat_id,
        "k_thread": key.thread_id,
    }


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


def _storable(value: Any) -> Any:
    """`value` with every string in it fit for any database (no NUL, valid Unicode)."""
    if isinstance(value, str):
        return clean.storable(value)
    if isinstance(value, dict):
        return {k: _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    return value
