"""Heartbeat rows and the fence (engine/store/replicas.py), on SQLite and PostgreSQL: a claim names its
replica, one watcher declares a replica dead, a dead replica's unfinished turns are found, and
the replica that comes back cannot post what was taken over."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from engine.messages import Answer, ChatType, Inbound, Outcome, Sender, ThreadKey
from engine.store import ConversationStore
from engine.store.replicas import TakenOver, still_ours

KEY = ThreadKey("slack", "T1", "C1", "171.1")
EARLIER = datetime.now(UTC) - timedelta(hours=1)


def twin(store: ConversationStore) -> ConversationStore:
    """Another process's store on the same database (its own replica id)."""
    return ConversationStore(store.engine)


async def claim(store: ConversationStore, message_id: str) -> None:
    assert await store.claim("slack", message_id, KEY, 0, question="VPN?", asker="U1")


async def test_a_claim_names_the_replica_answering_it(store: ConversationStore) -> None:
    a = await store.replicas.register(host="host-a", pid=11)
    await claim(store, "m-1")
    other = twin(store)
    await other.replicas.register(host="host-b", pid=12)
    peers = await other.replicas.peers()
    assert [(p.id, p.host, p.pid, p.beats) for p in peers] == [(a, "host-a", 11, 0)]
    assert await store.replicas.beat() and await store.replicas.beat()
    assert [p.beats for p in await other.replicas.peers()] == [2]
    assert await other.replicas.orphans(EARLIER) == []  # alive: its turns are its own
    assert await other.replicas.declare_dead(peers[0]) is False  # it beat since: not dead
    (seen,) = await other.replicas.peers()
    assert await other.replicas.declare_dead(seen)
    (orphan,) = await other.replicas.orphans(EARLIER)
    assert (orphan.message_id, orphan.question, orphan.asker_id) == ("m-1", "VPN?", "U1")
    assert orphan.thread_key == KEY
    assert await store.replicas.beat() is False  # it comes back: it learns it was counted dead


async def test_of_several_watchers_one_declares_the_replica_dead(
    store: ConversationStore,
) -> None:
    await store.replicas.register()
    watchers = [twin(store) for _ in range(4)]
    for watcher in watchers:
        await watcher.replicas.register()
    views = [await w.replicas.peers() for w in watchers]
    targets = [next(p for p in view if p.id == store.replicas.current) for view in views]
    won = await asyncio.gather(
        *(w.replicas.declare_dead(t) for w, t in zip(watchers, targets, strict=True))
    )
    assert sorted(won) == [False, False, False, True]


async def test_fence_lets_one_final_message_through(store: ConversationStore) -> None:
    await store.replicas.register()
    await claim(store, "m-ours")
    await claim(store, "m-taken")
    assert await store.mark_answered("slack", "m-taken")  # another replica took it over
    assert await still_ours(store.replicas, "slack", "m-ours")
    assert not await still_ours(store.replicas, "slack", "m-ours")  # posted once already
    assert not await still_ours(store.replicas, "slack", "m-taken")
    assert await still_ours(store.replicas, "slack", "never-claimed")  # nothing to fence


async def test_a_stopped_replica_leaves_its_unanswered_turns_at_once(
    store: ConversationStore,
) -> None:
    await store.replicas.register()
    await claim(store, "m-left")
    await claim(store, "m-done")
    await store.mark_answered("slack", "m-done")
    other = twin(store)
    await other.replicas.register()
    assert await other.replicas.orphans(EARLIER) == []
    await store.replicas.stop()
    assert [e.message_id for e in await other.replicas.orphans(EARLIER)] == ["m-left"]
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert await other.replicas.orphans(later) == []  # outside the window
    assert await other.replicas.forget(before=later) == 1
    assert await other.replicas.orphans(EARLIER) == []  # the sweeper's deadline has them now


async def test_what_a_dead_replica_claims_before_it_notices_stays_its_own(
    store: ConversationStore,
) -> None:
    await store.replicas.register()
    await claim(store, "m-before")
    other = twin(store)
    await other.replicas.register()
    (peer,) = await other.replicas.peers()
    assert await other.replicas.declare_dead(peer)
    await claim(store, "m-after")  # a zombie's claim, still under its old id: it answers it
    assert [e.message_id for e in await other.replicas.orphans(EARLIER)] == ["m-before"]
    assert await still_ours(store.replicas, "slack", "m-after")


async def test_a_turn_taken_over_is_not_stored_and_its_own_is_stored_once(
    store: ConversationStore,
) -> None:
    await store.replicas.register()
    await claim(store, "m-ours")
    await claim(store, "m-taken")
    thread = await store.thread(KEY)
    assert await store.mark_answered("slack", "m-taken")  # another replica apologised for it
    with pytest.raises(TakenOver):
        await store.add_turn(
            thread.id, _asked("m-taken"), Answer("late", Outcome.ANSWERED), fence=True
        )
    assert await store.add_turn(
        thread.id, _asked("m-ours"), Answer("VPN", Outcome.ANSWERED), fence=True
    )
    with pytest.raises(TakenOver):  # a second final message for the same event
        await store.add_turn(
            thread.id, _asked("m-ours"), Answer("again", Outcome.ANSWERED), fence=True
        )
    assert [t.answer for t in await store.history(thread.id, 5)] == ["VPN"]
    assert not await still_ours(store.replicas, "slack", "m-ours")  # the fence was taken


def _asked(message_id: str) -> Inbound:
    return Inbound(
        platform="slack",
        tenant="T1",
        chat_id="C1",
        chat_type=ChatType.GROUP,
        thread_id="171.1",
        message_id=message_id,
        sender=Sender(id="U1", display_name="Ann"),
        text="VPN?",
    )
