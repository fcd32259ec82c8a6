"""Heartbeat and handover: when a replica dies mid-answer, another one tells its askers within
seconds, not after the answer deadline.

Every `every` seconds a serving process bumps its heartbeat row (engine/store/replicas.py) and reads
the others'. A peer whose beats stood still for `lapse` seconds of this process's own watching is
declared dead, with one conditional UPDATE so that one watcher does it. The watching counts only
while this process's own beats succeed: a database outage stops everyone's beats, and afterwards
each starts watching afresh, so nobody is declared dead for it. No clocks are compared across
machines either: what counts is whether `beats` changed, timed by the watcher alone.

Then any live replica takes over the turns a dead or stopped replica left unanswered and sends
each asker the crash sweeper's apology (jobs/recovery.py passes it in as `apologise`): each turn
is taken with one conditional UPDATE, so across replicas every asker hears once. The takeover
runs in its own task, so a slow platform never holds up the beats. A process that finds its own
row dead registers again under a new id; the answers it was still writing meet the fence
(`engine.store.replicas.still_ours`) and are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

from prometheus_client import Counter, Gauge

from engine.store.records import UnansweredEvent
from engine.store.replicas import Peer, Replicas
from engine.store.tables import utcnow

log = logging.getLogger(__name__)

# Takes one unanswered event and tells its asker: True told, False could not be told, None
# not taken (another replica took it first, or it is still being answered in this process).
Apologise = Callable[[UnansweredEvent], Awaitable[bool | None]]

DECLARED_DEAD = Counter(
    "teambot_replicas_declared_dead",
    "Other replicas this one declared dead: their heartbeat stood still for the lapse",
)
TAKEN_OVER = Counter(
    "teambot_turns_taken_over",
    "Unfinished turns of a dead or stopped replica taken over, by whether the asker was told",
    ["platform", "outcome"],
)
REREGISTERED = Counter(
    "teambot_replica_reregistered",
    "Times this replica found itself declared dead and registered again under a new id",
)
PEERS = Gauge("teambot_replicas_alive", "Replicas alive as this one sees them, itself included")


class Handover:
    """The heartbeat loop of one serving process, and its share of the takeover."""

    def __init__(
        self,
        replicas: Replicas,
        apologise: Apologise,
        *,
        every: float = 5.0,
        lapse: float = 20.0,
        window: timedelta = timedelta(hours=1),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lapse < 2 * every:
            raise ValueError(f"lapse ({lapse} s) must be at least twice the beat ({every} s)")
        self._replicas, self._apologise = replicas, apologise
        self._every, self._lapse, self._window, self._clock = every, lapse, window, clock
        self._seen: dict[str, tuple[int, float]] = {}  # peer id → (beats, watched since)
        self._loop: asyncio.Task[None] | None = None
        self._taking: asyncio.Task[int] | None = None

    @property
    def replica(self) -> str | None:
        """This process's id in the `replicas` table (what its claims carry)."""
        return self._replicas.current

    async def start(self) -> None:
        """Register (before the adapters start: every claim then carries the id), then beat."""
        replica = await self._replicas.register()
        log.info("replica %s: heartbeat every %.0f s, lapse %.0f s", replica, self._every,
                 self._lapse)  # fmt: skip
        self._loop = asyncio.create_task(self._run(), name="replica heartbeat")

    async def stop(self) -> None:
        """Stop beating and mark this replica stopped: what it left unanswered (if anything)
        is taken over by the others at once."""
        for task in (self._loop, self._taking):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._loop = self._taking = None
        try:
            await self._replicas.stop()
        except Exception as error:  # the others will count it dead after the lapse instead
            log.warning("replica %s not marked stopped: %s", self.replica, error)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            await self.tick()
            if self._taking is None or self._taking.done():
                self._taking = asyncio.create_task(self.take_over(), name="replica takeover")

    async def tick(self) -> list[str]:
        """One beat and one look at the others; the ids of the peers this call declared dead."""
        try:
            async with asyncio.timeout(max(self._every, 5.0)):
                await self._beat()
                return await self._watch()
        except Exception as error:  # the database is away: what was seen of the others is stale
            self._seen.clear()
            log.warning(
                "replica %s: heartbeat failed (%s)", self.replica, str(error) or "timed out"
            )
            return []

    async def _beat(self) -> None:
        if await self._replicas.beat():
            return
        old = self.replica
        new = await self._replicas.register()
        REREGISTERED.inc()
        log.warning(
            "replica %s was counted dead by the others (its heartbeat stood still for %.0f s): "
            "its unfinished answers were taken over and will not be posted; now replica %s",
            old,
            self._lapse,
            new,
        )

    async def _watch(self) -> list[str]:
        now = self._clock()
        peers = await self._replicas.peers()
        PEERS.set(len(peers) + 1)
        self._seen = {p.id: self._seen[p.id] for p in peers if p.id in self._seen}
        dead: list[str] = []
        for peer in peers:
            beats, since = self._seen.get(peer.id, (None, now))
            if beats != peer.beats:
                self._seen[peer.id] = (peer.beats, now)
            elif now - since >= self._lapse and await self._declare(peer, now - since):
                dead.append(peer.id)
        return dead

    async def _declare(self, peer: Peer, still: float) -> bool:
        self._seen.pop(peer.id, None)
        if not await self._replicas.declare_dead(peer):
            return False  # another watcher did, or it beat just now
        DECLARED_DEAD.inc()
        log.warning(
            "replica %s (%s, pid %d) declared dead: no heartbeat for %.0f s; taking over its "
            "unfinished turns",
            peer.id,
            peer.host,
            peer.pid,
            still,
        )
        return True

    async def take_over(self) -> int:
        """Tell the asker of every turn a dead or stopped replica left unanswered (within the
        window); how many turns this call took."""
        try:
            events = await self._replicas.orphans(newer_than=utcnow() - self._window)
            await self._replicas.forget(before=utcnow() - self._window)
        except Exception as error:
            log.warning("takeover: unfinished turns not read (%s)", error)
            return 0
        taken = 0
        for event in events:
            try:
                told = await self._apologise(event)
            except Exception:  # one failure must not stop the others; the sweeper has it later
                log.exception("takeover of %s/%s failed", event.platform, event.message_id)
                continue
            if told is not None:
                taken += 1
                TAKEN_OVER.labels(event.platform, "told" if told else "unreachable").inc()
        if taken:
            log.info("takeover: %d unfinished turn(s) of other replicas taken over", taken)
        return taken
