"""The store's handoff and console queries on SQLite and PostgreSQL, and the figure maths."""

from __future__ import annotations

from engine.messages import Answer, ChatType, Inbound, Outcome, Sender, ThreadKey
from engine.store.conversations import ConversationStore
from engine.store.handoff_records import percentile
from engine.store.tables import ThreadState


def _message(key: ThreadKey, message_id: str, text: str) -> Inbound:
    return Inbound(
        key.platform, key.tenant, key.chat_id, ChatType.GROUP, key.thread_id, message_id,
        Sender("u1", "Ada"), text,
    )  # fmt: skip


async def test_search_threads_transcript_feedback(store: ConversationStore) -> None:
    vpn = await store.thread(ThreadKey("slack", "T", "C", "1"))
    other = await store.thread(ThreadKey("slack", "T", "C", "2"))
    first = await store.add_turn(
        vpn.id, _message(vpn.key, "m1", "VPN 100% broken?"), Answer("Reset it.", Outcome.ANSWERED)
    )
    await store.add_turn(
        vpn.id, _message(vpn.key, "m2", "thanks"), Answer("You're welcome", Outcome.ANSWERED)
    )
    await store.add_turn(
        other.id, _message(other.key, "m3", "报销流程"), Answer("见手册", Outcome.NO_KNOWLEDGE)
    )
    await store.add_feedback(first, "u1", "down", "wrong")

    everything = await store.handoffs.search_threads()
    assert [t.id for t in everything] == [other.id, vpn.id]
    [found] = await store.handoffs.search_threads("vpn 100%")  # case-insensitive, % taken literally
    assert (found.id, found.turns, found.first_question) == (vpn.id, 2, "VPN 100% broken?")
    assert found.last_outcome == "answered"
    assert await store.handoffs.search_threads("100_") == []
    [chinese] = await store.handoffs.search_threads("报销")
    assert chinese.id == other.id and chinese.last_outcome == "no_knowledge"
    assert await store.handoffs.feedback_for([first]) == {first: [("u1", "down", "wrong")]}
    assert await store.handoffs.feedback_for([]) == {}


async def test_handoff_lifecycle_rows(store: ConversationStore) -> None:
    thread = await store.thread(ThreadKey("slack", "T", "C", "9"))
    await store.set_state(thread.id, ThreadState.ESCALATED, trigger="button", question="q?")
    [waiting] = await store.handoffs.listed(resolved=False)
    assert (waiting.trigger, waiting.question, waiting.state) == ("button", "q?", "escalated")
    await store.set_state(thread.id, ThreadState.HUMAN, taken_by="mei")
    # resolved without any words from the person: no FAQ candidate
    await store.set_state(thread.id, ThreadState.RESOLVED, by="console:mei")
    [done] = await store.handoffs.listed(resolved=True)
    assert (done.taken_by, done.resolved_by) == ("mei", "console:mei")
    assert await store.handoffs.listed(resolved=False) == []
    assert await store.handoffs.candidates() == []
    # reopened and escalated again: a second handoff row
    await store.set_state(thread.id, ThreadState.OPEN)
    await store.set_state(thread.id, ThreadState.ESCALATED, trigger="asked_for_human")
    latest = await store.handoffs.latest(thread.id)
    assert latest is not None and latest.id != done.id and latest.resolved_at is None


def test_percentile_nearest_rank() -> None:
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.9) == 3.0
    assert percentile([1, 2, 3, 4], 0.5) == 2
    assert percentile(list(range(1, 11)), 0.9) == 9
