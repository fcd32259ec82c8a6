"""Replicas' heartbeats and the turns a lapsed replica leaves unfinished.

Each serving process registers a row in `replicas` and bumps its `beats` every few seconds
(jobs/handover.py runs the loop); every message it claims records its id
(`processed_events.replica`, written by `ConversationStore.claim` from `current`). A replica that
sees another's `beats` stand still long enough declares it dead with one conditional UPDATE, and
any live replica then takes over the dead one's unanswered events — each with the same
conditional UPDATE as the crash sweeper (`ConversationStore.mark_answered`), so across replicas
every turn gets one final message. The dead replica, should it come back, finds its row dead at
its next beat and registers again under a new id; an answer it was still writing meets the fence
(`Replicas.fence`) before it is posted, and is dropped.

Composed into `ConversationStore` as `store.replicas`.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, cast

from prometheus_client import Counter
from sqlalchemy import Connection, Table, bindparam, delete, insert, select, update

from engine.store.database import Database
from engine.store.records import UnansweredEvent, decode_key
from engine.store.tables import ProcessedEvent, Replica, ReplicaState, utcnow

log = logging.getLogger(__name__)

FENCED = Counter(
    "teambot_answers_fenced",
    "Final messages not posted: another replica had taken the turn over (this one was declared "
    "dead while it was still answering)",
    ["platform"],
)


class TakenOver(Exception):
    """The turn was taken over by another replica: its answer is not ours to store or post."""


@dataclass(frozen=True, slots=True)
class Peer:
    """Another replica as its watchers see it: alive while `beats` keeps growing."""

    id: str
    beats: int
    host: str
    pid: int


class Replicas:
    """The `replicas` table and the fence; `current` is this process's id once registered."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.current: str | None = None

    async def register(self, host: str | None = None, pid: int | None = None) -> str:
        """A new row for this process, alive; its id becomes `current` (claims carry it)."""
        host = (host or socket.gethostname())[:200]
        pid = os.getpid() if pid is None else pid
        replica = f"{host[:40]}-{pid}-{uuid.uuid4().hex[:12]}"
        now = utcnow()
        values = {
            "id": replica,
            "host": host,
            "pid": pid,
            "started_at": now,
            "beat_at": now,
            "beats": 0,
            "state": ReplicaState.ALIVE.value,
        }
        async with self._db.engine.begin() as conn:
            await conn.execute(insert(Replica).values(values))
        self.current = replica
        return replica

    async def beat(self) -> bool:
        """Bump this replica's beats; False when it was declared dead (or never registered)."""
        if self.current is None:
            return False
        stmt = (
            update(Replica)
            .where(Replica.id == self.current, Replica.state == ReplicaState.ALIVE.value)
            .values(beats=Replica.beats + 1, beat_at=utcnow())
        )
        async with self._db.engine.begin() as conn:
            result = await conn.execute(stmt)
        return _count(result) == 1

    async def peers(self) -> list[Peer]:
        """The other replicas that count as alive."""
        stmt = select(Replica.id, Replica.beats, Replica.host, Replica.pid).where(
            Replica.state == ReplicaState.ALIVE.value, Replica.id != (self.current or "")
        )
        async with self._db.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
        return [Peer(r.id, r.beats, r.host, r.pid) for r in rows]

    async def declare_dead(self, peer: Peer) -> bool:
        """Mark `peer` dead if its beats are still what the caller saw; True for the one caller,
        of all the replicas watching, that did."""
        stmt = (
            update(Replica)
            .where(
                Replica.id == peer.id,
                Replica.state == ReplicaState.ALIVE.value,
                Replica.beats == peer.beats,
            )
            .values(state=ReplicaState.DEAD.value, ended_at=utcnow(), ended_by=self.current)
        )
        async with self._db.engine.begin() as conn:
            return _count(await conn.execute(stmt)) == 1

    async def stop(self) -> None:
        """This replica shuts down: what it leaves unanswered is taken over at once."""
        if self.current is None:
            return
        stmt = (
            update(Replica)
            .where(Replica.id == self.current, Replica.state == ReplicaState.ALIVE.value)
            .values(state=ReplicaState.STOPPED.value, ended_at=utcnow(), ended_by=self.current)
        )
        async with self._db.engine.begin() as conn:
            await conn.execute(stmt)

    async def orphans(self, newer_than: datetime) -> list[UnansweredEvent]:
        """Unanswered events received since `newer_than` by replicas that are dead or stopped,
        claimed before they ended (what a replica claimed after it was declared dead, before
        it noticed, it still answers itself), oldest first."""
        if newer_than.tzinfo is None:
            raise ValueError("newer_than is a naive datetime: pass an aware one (UTC)")
        stmt = (
            select(ProcessedEvent)
            .join(Replica, Replica.id == ProcessedEvent.replica)
            .where(
                Replica.state != ReplicaState.ALIVE.value,
                ProcessedEvent.answered_at.is_(None),
                ProcessedEvent.received_at >= newer_than,
                ProcessedEvent.received_at <= Replica.ended_at,
            )
            .order_by(ProcessedEvent.received_at, ProcessedEvent.id)
        )
        async with self._db.sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [_unanswered(r) for r in rows]

    async def fence(self, platform: str, message_id: str) -> bool:
        """Take the right to post the final message of a claimed event: True when nobody else
        has (or there is no such event); False when another replica took the turn over."""
        return await self._db.unit(
            partial(fence_on, platform=platform, message_id=message_id, when=utcnow())
        )

    async def forget(self, before: datetime) -> int:
        """Delete the rows of replicas that ended before `before`; how many went."""
        stmt = delete(Replica).where(
            Replica.state != ReplicaState.ALIVE.value, Replica.ended_at < before
        )
        async with self._db.engine.begin() as conn:
            return _count(await conn.execute(stmt))


# The fence's statements, built once (it runs for every answer): the values come as parameters
_EVENTS = cast(Table, ProcessedEvent.__table__)
_EVENT = (
    _EVENTS.c.platform == bindparam("f_platform"),
    _EVENTS.c.message_id == bindparam("f_message"),
)
_FENCE = (
    update(_EVENTS)
    .where(*_EVENT, _EVENTS.c.answered_at.is_(None))
    .values(answered_at=bindparam("f_when"))
)
_EVENT_ID = select(_EVENTS.c.id).where(*_EVENT)


def fence_on(conn: Connection, platform: str, message_id: str, when: datetime) -> bool:
    """`Replicas.fence` inside the caller's transaction (the turn is stored in the same one:
    `ConversationStore.add_turn(fence=True)`); sets the event's answered_at when it wins."""
    event = {"f_platform": platform, "f_message": message_id, "f_when": when}
    if _count(conn.execute(_FENCE, event)) == 1:
        return True
    return conn.scalar(_EVENT_ID, event) is None


def fenced_out(platform: str, message_id: str) -> None:
    """Count and log a final message not posted because the turn was taken over."""
    FENCED.labels(platform).inc()
    log.warning(
        "answer to %s/%s not posted: another replica took the turn over while this one "
        "was counted dead",
        platform,
        message_id,
    )


async def still_ours(replicas: Replicas, platform: str, message_id: str) -> bool:
    """The fence before a final message: False when the turn was taken over (the asker was
    told by the replica that took it). When the database cannot say, the answer goes out: a
    turn is taken over only after its replica's heartbeat stood still for a long while."""
    try:
        ours = await replicas.fence(platform, message_id)
    except Exception as error:
        log.warning("fence for %s/%s not checked (%s): answering", platform, message_id, error)
        return True
    if not ours:
        fenced_out(platform, message_id)
    return ours


def _unanswered(row: ProcessedEvent) -> UnansweredEvent:
    return UnansweredEvent(
        row.platform,
        row.message_id,
        decode_key(row.thread_key),
        row.received_at,
        row.question or "",
        row.asker_id or "",
    )


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
