"""ConversationStore on SQLite and PostgreSQL (the `store` fixture runs each test on both)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from bot.db import upgrade_async
from engine.messages import (
    Answer,
    ChatType,
    Citation,
    Inbound,
    Outcome,
    Sender,
    ThreadKey,
    Timings,
    Usage,
)
from engine.store.conversations import ConversationStore, ThreadRecord
from engine.store.tables import FeedbackValue, Thread, ThreadState
from tests.helpers import pg_schema, sqlite_url

KEY = ThreadKey("slack", "T01", "C01", "1700000000.000100")


def inbound(
    message_id: str, text: str = "how do I reset my VPN token?", key: ThreadKey = KEY
) -> Inbound:
    return Inbound(
        platform=key.platform,
        tenant=key.tenant,
        chat_id=key.chat_id,
        chat_type=ChatType.GROUP,
        thread_id=key.thread_id,
        message_id=message_id,
        sender=Sender("U42", "李雷"),
        text=text,
    )


def answer(text: str = "Open the portal and press Reset [1].") -> Answer:
    return Answer(text=text, outcome=Outcome.ANSWERED)


async def count_threads(store: ConversationStore) -> int:
    async with store.engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Thread))).scalar_one())


async def test_claim_event_once(store: ConversationStore) -> None:
    assert await store.claim_event("slack", "m1", KEY) is True
    assert await store.claim_event("slack", "m1", KEY) is False
    # the key is (platform, message id): the same id on another platform is another event
    assert await store.claim_event("feishu", "m1", KEY) is True


async def test_claim_event_concurrent_exactly_one_wins(store: ConversationStore) -> None:
    results = await asyncio.gather(*(store.claim_event("slack", "race", KEY) for _ in range(20)))
    assert sorted(results) == [False] * 19 + [True]


async def test_claim_gives_the_thread_and_its_last_turns_once(store: ConversationStore) -> None:
    first = await store.claim("slack", "c1", KEY, 3)
    assert first is not None and first.thread.key == KEY and first.history == ()
    assert first.thread.state is ThreadState.OPEN
    for i in range(4):
        await store.add_turn(first.thread.id, inbound(f"c{i}", f"question {i}"), answer())
    second = await store.claim("slack", "c9", KEY, 3)
    assert second is not None and second.thread.id == first.thread.id
    assert [t.question for t in second.history] == ["question 1", "question 2", "question 3"]
    assert await store.claim("slack", "c9", KEY, 3) is None  # a redelivery
    assert await store.claim_event("slack", "c9", KEY) is False  # the same dedupe row


async def test_concurrent_claims_in_a_new_thread_make_one_thread_and_one_winner(
    store: ConversationStore,
) -> None:
    other = ThreadKey("slack", "T01", "C01", "new-thread")
    same = await asyncio.gather(*(store.claim("slack", "race", other, 5) for _ in range(10)))
    assert sum(c is not None for c in same) == 1
    many = await asyncio.gather(*(store.claim("slack", f"r{i}", other, 5) for i in range(10)))
    assert len({c.thread.id for c in many if c is not None}) == 1
    assert await count_threads(store) == 1


async def test_thread_get_or_create(store: ConversationStore) -> None:
    first = await store.thread(KEY)
    assert isinstance(first, ThreadRecord)
    assert first.key == KEY
    assert first.state is ThreadState.OPEN
    assert first.taken_by is None and first.escalation_trigger is None
    assert first.created_at.tzinfo is not None
    again = await store.thread(KEY)
    assert again.id == first.id
    other = await store.thread(ThreadKey("slack", "T01", "C01", "other"))
    assert other.id != first.id


async def test_thread_get_or_create_concurrent_makes_one_row(store: ConversationStore) -> None:
    records = await asyncio.gather(*(store.thread(KEY) for _ in range(20)))
    assert len({r.id for r in records}) == 1
    assert await count_threads(store) == 1


async def test_set_state(store: ConversationStore) -> None:
    thread = await store.thread(KEY)
    escalated = await store.set_state(thread.id, ThreadState.ESCALATED, trigger="asked_for_human")
    assert escalated.state is ThreadState.ESCALATED
    assert escalated.escalation_trigger == "asked_for_human"
    assert escalated.state_changed_at >= thread.state_changed_at

    human = await store.set_state(
        thread.id, ThreadState.HUMAN, taken_by="U7", trigger="asked_for_human"
    )
    loaded = await store.thread(KEY)
    assert loaded == human
    assert (loaded.state, loaded.taken_by) == (ThreadState.HUMAN, "U7")

    reopened = await store.set_state(thread.id, ThreadState.OPEN)
    assert (reopened.state, reopened.taken_by, reopened.escalation_trigger) == (
        ThreadState.OPEN,
        None,
        None,
    )
    with pytest.raises(LookupError):
        await store.set_state(thread.id + 1000, ThreadState.RESOLVED)


async def test_waiting_threads_of_a_chat_with_their_askers(store: ConversationStore) -> None:
    def window(asker: str, chat: str = "cid1") -> ThreadKey:
        return ThreadKey("dingtalk", "corp", chat, f"{asker}@1700000000")

    for asker, chat in (("alice", "cid1"), ("bob", "cid1"), ("carol", "cid1"), ("dan", "cid2")):
        thread = await store.thread(window(asker, chat))
        asked = Inbound(
            platform="dingtalk",
            tenant="corp",
            chat_id=chat,
            chat_type=ChatType.GROUP,
            thread_id=thread.key.thread_id,
            message_id=f"m-{asker}",
            sender=Sender(asker),
            text="转人工",
        )
        await store.add_turn(thread.id, asked, answer())
        if asker != "carol":  # carol's thread is open: nobody waits there
            await store.set_state(thread.id, ThreadState.ESCALATED, trigger="asked_for_human")
    bob = await store.thread(window("bob"))
    await store.set_state(bob.id, ThreadState.HUMAN, taken_by="mei")  # taken: no longer waiting
    waiting = await store.waiting_threads("dingtalk", "corp", "cid1")
    assert [(thread.key, asker) for thread, asker in waiting] == [(window("alice"), "alice")]
    assert await store.waiting_threads("dingtalk", "other-corp", "cid1") == []


async def test_history_returns_last_n_oldest_first(store: ConversationStore) -> None:
    thread = await store.thread(KEY)
    other = await store.thread(ThreadKey("slack", "T01", "C01", "elsewhere"))
    for i in range(5):
        await store.add_turn(thread.id, inbound(f"m{i}", f"question {i}"), answer(f"answer {i}"))
    await store.add_turn(other.id, inbound("x", "not this thread"), answer())

    last3 = await store.history(thread.id, 3)
    assert [t.question for t in last3] == ["question 2", "question 3", "question 4"]
    assert [t.answer for t in last3] == ["answer 2", "answer 3", "answer 4"]
    assert all(t.thread_id == thread.id for t in last3)
    assert len(await store.history(thread.id, 50)) == 5
    assert await store.history(thread.id, 0) == []


async def test_add_turn_round_trips_everything(store: ConversationStore) -> None:
    thread = await store.thread(KEY)
    citations = (
        Citation(1, "VPN guide", "wiki", "https://wiki.example/vpn", section="Reset"),
        Citation(2, "搜索结果", "web", "https://example.com/a", kind="web"),
    )
    full = Answer(
        text="按 Reset 即可 [1][2]",
        outcome=Outcome.NO_KNOWLEDGE,
        language="zh",
        reasoning="<the model's thinking>",
        citations=citations,
        usage=Usage(prompt_tokens=812, completion_tokens=95, cached_tokens=640),
        timings=Timings(retrieval=0.12, first_token=0.8, first_visible=1.1, total=3.4),
    )
    turn_id = await store.add_turn(thread.id, inbound("m1", "VPN 怎么重置？"), full)

    turn = await store.turn(turn_id)
    assert turn is not None
    assert turn.id == turn_id
    assert (turn.question, turn.answer, turn.reasoning) == (
        "VPN 怎么重置？",
        full.text,
        full.reasoning,
    )
    assert (turn.asker_id, turn.asker_name, turn.message_id) == ("U42", "李雷", "m1")
    assert turn.outcome is Outcome.NO_KNOWLEDGE
    assert turn.language == "zh"
    assert turn.citations == citations
    assert turn.usage == full.usage
    assert turn.timings == full.timings
    assert turn.created_at.tzinfo is not None
    assert abs(turn.created_at - datetime.now(UTC)) < timedelta(minutes=1)
    assert (await store.thread(KEY)).last_message_at == turn.created_at
    assert await store.turn(turn_id + 1000) is None

    # the optional figures stay None
    bare = await store.add_turn(thread.id, inbound("m2"), answer())
    loaded = await store.turn(bare)
    assert loaded is not None
    assert loaded.usage.cached_tokens is None
    assert loaded.timings.first_token is None and loaded.timings.first_visible is None
    assert loaded.citations == ()


async def test_feedback_upsert(store: ConversationStore) -> None:
    thread = await store.thread(KEY)
    turn_id = await store.add_turn(thread.id, inbound("m1"), answer())

    await store.add_feedback(turn_id, "U1", "up")
    await store.add_feedback(turn_id, "U2", FeedbackValue.DOWN, "wrong link")
    await store.add_feedback(turn_id, "U1", "down", "changed my mind")  # replaces U1's first click
    assert await store.feedback(turn_id) == {
        "U1": (FeedbackValue.DOWN, "changed my mind"),
        "U2": (FeedbackValue.DOWN, "wrong link"),
    }
    with pytest.raises(ValueError):
        await store.add_feedback(turn_id, "U1", "meh")
    with pytest.raises(LookupError):
        await store.add_feedback(turn_id + 1000, "U1", "up")


async def test_unanswered_events(store: ConversationStore) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    thread = await store.thread(KEY)
    await store.claim_event("slack", "crashed", KEY)
    await store.claim_event("slack", "answered", KEY)
    await store.claim_event("slack", "ignored", KEY)
    await store.add_turn(thread.id, inbound("answered"), answer())  # marks it answered
    await store.mark_answered("slack", "ignored")
    after = datetime.now(UTC) + timedelta(seconds=1)

    found = await store.upkeep.unanswered_events(older_than=after, newer_than=before)
    assert [(e.platform, e.message_id, e.thread_key) for e in found] == [("slack", "crashed", KEY)]
    assert found[0].received_at.tzinfo is not None
    # outside the window: nothing
    assert (
        await store.upkeep.unanswered_events(
            older_than=before, newer_than=before - timedelta(hours=1)
        )
        == []
    )
    with pytest.raises(ValueError, match="naive"):
        await store.upkeep.unanswered_events(older_than=datetime.now(), newer_than=before)


async def test_sqlite_two_replicas_on_one_file(tmp_path: Path) -> None:
    """Two engines on one SQLite file (as two processes would be): no "database is locked"."""
    url = sqlite_url(tmp_path)
    await upgrade_async(url)
    a, b = ConversationStore.from_url(url), ConversationStore.from_url(url)
    try:
        claims = await asyncio.gather(
            *(s.claim_event("slack", f"m{i % 10}", KEY) for i in range(40) for s in (a, b))
        )
        assert claims.count(True) == 10
        threads = await asyncio.gather(*(s.thread(KEY) for _ in range(10) for s in (a, b)))
        assert len({t.id for t in threads}) == 1
        turn_ids = await asyncio.gather(
            *(
                s.add_turn(threads[0].id, inbound(f"m{i}"), answer())
                for i in range(20)
                for s in (a, b)
            )
        )
        assert len(set(turn_ids)) == 40
        assert len(await a.history(threads[0].id, 100)) == 40
    finally:
        await a.close()
        await b.close()


async def _drop_connections(url: str, name: str) -> int:
    """Terminate the server side of every connection with application_name `name`."""
    admin = ConversationStore.from_url(url)
    try:
        async with admin.engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :n"
                ),
                {"n": name},
            )
            return len(result.all())
    finally:
        await admin.close()


@pytest.mark.postgres
@pytest.mark.parametrize("idle_ping", [0.0, 3600.0])
async def test_a_connection_the_server_dropped_while_idle_is_replaced(idle_ping: float) -> None:
    """After a PostgreSQL restart the first message still gets through: an idle pooled
    connection is pinged and replaced. (A connection in use is never pinged: the benchmark's
    hot path saves three round trips per transaction.)"""
    name = f"teambot-ping-{idle_ping:g}"
    async with pg_schema() as (url, connect_args):
        await upgrade_async(url, connect_args=connect_args)
        args = {
            **connect_args,
            "server_settings": {**connect_args["server_settings"], "application_name": name},
        }
        store = ConversationStore.from_url(url, connect_args=args, idle_ping=idle_ping)
        try:
            assert await store.claim_event("slack", "before", KEY)
            assert await _drop_connections(url, name) >= 1
            if idle_ping:  # not idle long enough to be pinged: the dead connection is used
                with pytest.raises(DBAPIError):
                    await store.claim_event("slack", "after", KEY)
            assert await store.claim_event("slack", "after", KEY)
        finally:
            await store.close()


def test_storage_pool_size_sizes_the_postgres_pool() -> None:
    """storage.pool_size: too small a pool opens and closes connections under load."""
    store = ConversationStore.from_url(
        "postgresql+asyncpg://teambot@127.0.0.1:5432/teambot", pool_size=7
    )
    assert store.engine.pool.size() == 7  # type: ignore[attr-defined]
