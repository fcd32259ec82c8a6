"""Handoff jobs with a controlled clock, on SQLite and PostgreSQL: SLA reminders once per level,
idle close, figures, the learning loop's candidates, and the replica lock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from engine.config import ConversationSettings
from engine.conversation import Conversation
from engine.messages import (
    Answer,
    ChatType,
    EscalationNotice,
    Inbound,
    Outcome,
    Sender,
    ThreadKey,
)
from engine.ports import ChannelLimits, ReplyChannel
from engine.store.conversations import ConversationStore
from engine.store.tables import CandidateStatus, ThreadState
from engine.threads.escalation import ChannelEscalation, EscalationSettings
from jobs.handoff import close_idle, remind_unanswered, update_figures
from jobs.lock import job_lock

T0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC)  # a Monday, 10:00 in Shanghai
KEY = ThreadKey("fake", "T1", "C1", "th-1")
OTHER = ThreadKey("fake", "T1", "C-slow", "th-2")


class Channel:
    def __init__(self, sink: list[Any]) -> None:
        self.sink = sink

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits()

    async def open(self, language: str = "en") -> None: ...

    async def update(self, text: str) -> None: ...

    async def finish(self, answer: Answer) -> None:
        self.sink.append(answer)

    async def post_escalation(self, notice: EscalationNotice) -> None:
        self.sink.append(notice)


class FakeAdapter:
    name = "fake"

    def __init__(self) -> None:
        self.posted: list[Any] = []

    def reply_channel(self, key: ThreadKey, chat_type: object = None) -> ReplyChannel | None:
        return Channel(self.posted)


def conversation(store: ConversationStore) -> Conversation:
    return Conversation(ConversationSettings(), store=store, retriever=None, llm=None)  # type: ignore[arg-type]


async def escalate(store: ConversationStore, key: ThreadKey, at: datetime, question: str) -> int:
    thread = await store.thread(key)
    message = Inbound(
        key.platform, key.tenant, key.chat_id, ChatType.GROUP, key.thread_id,
        f"m-{key.thread_id}", Sender("u1", "Ada"), question,
    )  # fmt: skip
    await store.claim_event(key.platform, message.message_id, key)
    await store.add_turn(thread.id, message, Answer("I do not know.", Outcome.NO_KNOWLEDGE))
    await store.set_state(
        thread.id, ThreadState.ESCALATED, trigger="no_grounding", question=question, now=at
    )
    return thread.id


async def test_reminders_once_per_level_by_channel_sla(store: ConversationStore) -> None:
    settings = EscalationSettings(
        sla_minutes=15, channels={"fake:C-slow": ChannelEscalation(sla_minutes=60)}
    )
    adapter = FakeAdapter()
    await escalate(store, KEY, T0, "Where is the VPN guide?")
    await escalate(store, OTHER, T0, "Who approves travel?")

    assert await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(minutes=14)) == []
    first = await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(minutes=16))
    assert [level for _, level in first] == [1]
    notice = adapter.posted[-1]
    assert isinstance(notice, EscalationNotice) and notice.thread == KEY
    assert "Reminder" in notice.summary and "提醒" in notice.summary
    assert notice.question == "Where is the VPN guide?"
    # the same level is never sent twice
    assert await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(minutes=20)) == []
    second = await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(minutes=31))
    assert second == [(first[0][0], 2)]
    assert "Second-level" in adapter.posted[-1].summary
    # the slow channel (SLA 60) jumps straight to level 2 when first seen at 125 minutes
    late = await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(minutes=125))
    assert [level for _, level in late] == [2]
    assert await remind_unanswered(store, settings, [adapter], now=T0 + timedelta(hours=9)) == []
    assert len(adapter.posted) == 3


async def test_a_taken_thread_is_not_reminded(store: ConversationStore) -> None:
    adapter = FakeAdapter()
    thread_id = await escalate(store, KEY, T0, "Where is the VPN guide?")
    await conversation(store).take(thread_id, "mei")
    later = T0 + timedelta(hours=2)
    assert await remind_unanswered(store, EscalationSettings(), [adapter], now=later) == []


async def test_unreachable_platform_claims_the_level_and_posts_nothing(
    store: ConversationStore,
) -> None:
    class Mute(FakeAdapter):
        def reply_channel(self, key: ThreadKey, chat_type: object = None) -> ReplyChannel | None:
            return None

    await escalate(store, KEY, T0, "q")
    later = T0 + timedelta(minutes=16)
    assert await remind_unanswered(store, EscalationSettings(), [Mute()], now=later) == []
    assert (await store.handoffs.latest((await store.thread(KEY)).id)).renotified == 1  # type: ignore[union-attr]


async def test_close_idle_and_learning_loop_candidate(store: ConversationStore) -> None:
    core = conversation(store)
    human_id = await escalate(store, KEY, T0, "How do I get a parking permit?")
    assert await core.human_replied(KEY, "mei", "Ask facilities at desk B2; it takes a day.")
    quiet = await store.thread(ThreadKey("fake", "T1", "C1", "quiet"))
    settings = EscalationSettings(idle_resolve_hours=24)

    # the escalation is from T0, but the agent's message counts as activity
    now = datetime.now(UTC)
    assert await close_idle(store.handoffs, core, settings, now=now + timedelta(hours=23)) == []
    closed = await close_idle(store.handoffs, core, settings, now=now + timedelta(hours=25))
    assert closed == [human_id, quiet.id]
    thread = await store.thread_by_id(human_id)
    assert thread is not None and thread.state == ThreadState.RESOLVED
    handoff = await store.handoffs.latest(human_id)
    assert handoff is not None and handoff.resolved_by == "idle" and handoff.taken_by == "mei"

    [candidate] = await store.handoffs.candidates(CandidateStatus.PENDING)
    assert candidate.question == "How do I get a parking permit?"
    assert candidate.answer == "Ask facilities at desk B2; it takes a day."
    assert candidate.answered_by == "mei"
    approved = await store.handoffs.decide_candidate(candidate.id, CandidateStatus.APPROVED, "lead")
    assert approved is not None and approved.status == CandidateStatus.APPROVED
    assert (
        await store.handoffs.decide_candidate(candidate.id, CandidateStatus.REJECTED, "x") is None
    )
    assert await close_idle(store.handoffs, core, EscalationSettings(idle_resolve_hours=0)) == []


async def test_figures_from_a_controlled_clock(store: ConversationStore) -> None:
    core = conversation(store)
    # a bot-only thread, resolved by the asker
    bot = await store.thread(ThreadKey("fake", "T1", "C1", "bot"))
    message = Inbound("fake", "T1", "C1", ChatType.GROUP, "bot", "m-bot", Sender("u2"), "hi")
    await store.add_turn(bot.id, message, Answer("hello", Outcome.ANSWERED))
    await store.set_state(bot.id, ThreadState.RESOLVED, by="asker")
    # a handed-off thread: escalated at T0, first response +6 min, resolved +20 min
    now = datetime.now(UTC)
    start = now - timedelta(hours=1)
    human = await escalate(store, KEY, start, "Where is the VPN guide?")
    await store.set_state(
        human, ThreadState.HUMAN, taken_by="mei", now=start + timedelta(minutes=5)
    )
    await store.handoffs.record_human_message(
        human, "mei", "Here.", now=start + timedelta(minutes=6)
    )
    await core.resolve(human, by="console:mei", now=start + timedelta(minutes=20))

    figures = await update_figures(store.handoffs, now=now + timedelta(minutes=1))
    assert (figures.threads, figures.escalated) == (2, 1)
    assert figures.escalation_rate == 0.5
    assert figures.first_response_median == 360
    assert figures.resolution_median == 1200
    assert (figures.bot_resolved, figures.human_resolved) == (1, 1)
    assert figures.bot_share == 0.5


async def test_job_lock_lets_one_holder_in(store: ConversationStore) -> None:
    async with job_lock(store.engine, "test:lock") as first:
        assert first
        async with job_lock(store.engine, "test:lock") as second:
            assert not second
        async with job_lock(store.engine, "test:other") as other:
            assert other
    async with job_lock(store.engine, "test:lock") as again:
        assert again


async def test_concurrent_reminder_runs_post_once(store: ConversationStore) -> None:
    adapter = FakeAdapter()
    await escalate(store, KEY, T0, "q")
    later = T0 + timedelta(minutes=16)
    runs = await asyncio.gather(
        *(remind_unanswered(store, EscalationSettings(), [adapter], now=later) for _ in range(4))
    )
    assert sum(len(r) for r in runs) == 1 and len(adapter.posted) == 1
