"""Heartbeat and handover (jobs/handover.py) with a controlled clock, on SQLite and PostgreSQL:
a replica whose beats stand still is declared dead and its askers get one apology; a database
outage declares nobody dead; the replica that comes back registers again."""

from __future__ import annotations

import asyncio

import pytest

from engine.messages import ThreadKey
from engine.store import ConversationStore
from engine.store.replicas import still_ours
from jobs.handover import Handover
from jobs.recovery import APOLOGY, apologise_event
from tests.jobs.test_recovery import PushingAdapter

KEY = ThreadKey("slack", "T1", "C1", "171.1")
WEB = ThreadKey("web", "local", "chat-1", "thread-1")


class Replica:
    """One serving process: its store (own replica id), its platforms, its heartbeat."""

    def __init__(self, store: ConversationStore, clock: list[float], every: float = 1) -> None:
        self.store = ConversationStore(store.engine)
        self.slack, self.web = PushingAdapter("slack"), PushingAdapter("web")
        platforms = {"slack": self.slack, "web": self.web}

        async def apologise(event):  # type: ignore[no-untyped-def]
            return await apologise_event(self.store, platforms, event)

        self.heart = Handover(
            self.store.replicas, apologise, every=every, lapse=4 * every, clock=lambda: clock[0]
        )

    @property
    def posted(self) -> list[tuple[ThreadKey, str]]:
        return self.slack.posted + self.web.posted


async def test_a_dead_replicas_askers_get_one_apology_each(store: ConversationStore) -> None:
    clock = [0.0]
    a, b, c = (Replica(store, clock) for _ in range(3))
    for replica in (a, b, c):
        await replica.store.replicas.register()
    old = a.heart.replica
    assert await a.store.claim("slack", "m-1", KEY, 0, question="VPN?", asker="U1")
    assert await a.store.claim("web", "m-2", WEB, 0, question="休假？", asker="chat-1")
    for t in (0.0, 1.0, 2.0):  # everyone beats; then A is killed
        clock[0] = t
        for replica in (a, b, c):
            assert await replica.heart.tick() == []
    for t in (3.0, 4.0, 5.0):  # A stood still for 3 s of watching: not yet
        clock[0] = t
        assert await b.heart.tick() == [] and await c.heart.tick() == []
    clock[0] = 6.5
    declared = await asyncio.gather(b.heart.tick(), c.heart.tick())
    assert sorted(declared) == [[], [old]]  # one watcher declares it
    taken = await asyncio.gather(b.heart.take_over(), c.heart.take_over(), b.heart.take_over())
    assert sum(taken) == 2
    assert sorted(b.posted + c.posted, key=repr) == sorted(
        [(KEY, APOLOGY), (WEB, APOLOGY)], key=repr
    )
    # A comes back: its answers in flight meet the fence, it beats under a new id
    assert not await still_ours(a.store.replicas, "slack", "m-1")
    assert await a.heart.tick() == []
    assert a.heart.replica not in (None, old)
    assert [p.id for p in await b.store.replicas.peers()].count(a.heart.replica) == 1
    assert await b.heart.take_over() == 0 and await a.heart.take_over() == 0
    assert a.posted == []
    turns = await a.store.history((await a.store.thread(KEY)).id, 5)
    assert [(t.question, t.answer) for t in turns] == [("VPN?", APOLOGY)]  # the audit record


async def test_a_database_outage_declares_nobody_dead(
    store: ConversationStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [0.0]
    a, b = Replica(store, clock), Replica(store, clock)
    for replica in (a, b):
        await replica.store.replicas.register()
    assert await a.store.claim("slack", "m-1", KEY, 0)
    await a.heart.tick()
    await b.heart.tick()

    async def unreachable() -> bool:
        raise ConnectionError("the database restarts")

    with monkeypatch.context() as outage:  # nobody can beat for 30 s
        outage.setattr(a.store.replicas, "beat", unreachable)
        outage.setattr(b.store.replicas, "beat", unreachable)
        for t in range(1, 31):
            clock[0] = float(t)
            assert await a.heart.tick() == [] and await b.heart.tick() == []
    clock[0] = 31.0  # back: B sees A's beats as they were before the outage, and waits
    assert await b.heart.tick() == []
    clock[0] = 32.0
    await a.heart.tick()
    for t in (33.0, 34.0, 35.0, 36.0, 37.0):
        clock[0] = t
        assert await b.heart.tick() == []
        await a.heart.tick()
    assert await b.heart.take_over() == 0
    assert b.posted == []


async def test_a_stopped_replicas_leftovers_are_taken_over_at_once(
    store: ConversationStore,
) -> None:
    clock = [0.0]
    a, b = Replica(store, clock, every=60), Replica(store, clock, every=60)  # no beat on its own
    await a.heart.start()
    await b.heart.start()
    try:
        assert await a.store.claim("slack", "m-left", KEY, 0)
        await a.heart.stop()
        assert await b.heart.take_over() == 1
        assert b.posted == [(KEY, APOLOGY)]
    finally:
        await b.heart.stop()


def test_the_lapse_must_span_two_beats(store: ConversationStore) -> None:
    async def apologise(event):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(ValueError, match="twice"):
        Handover(store.replicas, apologise, every=5, lapse=8)
