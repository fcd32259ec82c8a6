"""Handoff jobs: remind about escalations nobody took, close idle threads, refresh the figures
and index the managed FAQ. Each takes its job lock, so one replica runs it at a time.

Every job accepts `now` so tests drive it with a controlled clock.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine import metrics
from engine.conversation import Conversation
from engine.messages import ChatType, EscalationNotice, ThreadKey
from engine.ports import ReplyChannel
from engine.store.conversations import ConversationStore, HandoffStore
from engine.store.handoff_records import Figures, HandoffRecord
from engine.text import clip
from engine.threads.escalation import EscalationSettings
from jobs.faq import ManagedFaq
from jobs.lock import job_lock
from knowledge import KnowledgeBase

log = logging.getLogger(__name__)

REMINDER_LEVELS = 2  # at the SLA, then the second level at twice the SLA
FIGURES_WINDOW = timedelta(days=7)
REMIND_EVERY = 60.0  # seconds
IDLE_EVERY = 600.0
FIGURES_EVERY = 60.0
FAQ_EVERY = 300.0


class Reachable(Protocol):
    """The part of an adapter the jobs need (adapters.base.Adapter has it)."""

    name: str

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> ReplyChannel | None: ...


def reminder_text(level: int, waited_minutes: float, sla_minutes: float) -> str:
    """The line put at the top of a reminder notice, in both languages."""
    if level >= REMINDER_LEVELS:
        return (
            f"⚠️ 二级提醒：{waited_minutes:.0f} 分钟无人接手（SLA {sla_minutes:.0f} 分钟），请组长处理。\n"
            f"⚠️ Second-level reminder: nobody took this thread for {waited_minutes:.0f} min "
            f"(SLA {sla_minutes:.0f} min) — team lead, please assign it."
        )
    return (
        f"⏰ 提醒：{waited_minutes:.0f} 分钟无人接手（SLA {sla_minutes:.0f} 分钟）。\n"
        f"⏰ Reminder: nobody took this thread for {waited_minutes:.0f} min "
        f"(SLA {sla_minutes:.0f} min)."
    )


async def remind_unanswered(
    store: ConversationStore,
    escalation: EscalationSettings,
    adapters: Sequence[Reachable],
    *,
    now: datetime | None = None,
) -> list[tuple[int, int]]:
    """Re-notify escalations nobody took within their channel's SLA; one notice per level.

    Returns (handoff id, level) for every reminder posted."""
    now = now or datetime.now(UTC)
    posted: list[tuple[int, int]] = []
    async with job_lock(store.engine, "handoff:remind") as mine:
        if not mine:
            return posted
        by_name = {adapter.name: adapter for adapter in adapters}
        for handoff in await store.handoffs.unanswered(REMINDER_LEVELS):
            sla = escalation.for_chat(handoff.key.platform, handoff.key.chat_id).sla_minutes
            waited = (now - handoff.escalated_at).total_seconds() / 60
            level = min(REMINDER_LEVELS, int(waited // sla))
            if level <= handoff.renotified:
                continue
            # Claim the level first: a reminder is posted at most once, whatever happens next.
            if not await store.handoffs.mark_renotified(handoff.id, handoff.renotified, level):
                continue
            if await _post_reminder(store, handoff, by_name, level, waited, sla):
                posted.append((handoff.id, level))
                metrics.HANDOFF_REMINDERS.labels(str(level)).inc()
    return posted


async def _post_reminder(
    store: ConversationStore,
    handoff: HandoffRecord,
    adapters: dict[str, Reachable],
    level: int,
    waited: float,
    sla: float,
) -> bool:
    adapter = adapters.get(handoff.key.platform)
    thread = await store.thread_by_id(handoff.thread_id) if adapter is not None else None
    chat_type = thread.chat_type if thread is not None else None
    channel = adapter.reply_channel(handoff.key, chat_type) if adapter is not None else None
    if channel is None:
        log.warning(
            "escalation of %s unanswered for %.0f min; %s cannot post a reminder",
            handoff.key,
            waited,
            handoff.key.platform,
        )
        return False
    records = await store.history(handoff.thread_id, 3)
    summary = "\n".join(f"Q: {r.question}\nA: {clip(r.answer, 300)}" for r in records)
    notice = EscalationNotice(
        thread=handoff.key,
        question=handoff.question,
        trigger=f"{handoff.trigger} · reminder {level}",
        summary=f"{reminder_text(level, waited, sla)}\n\n{summary}".strip(),
        citations=records[-1].citations if records else (),
    )
    try:
        await channel.post_escalation(notice)
    except Exception:  # one platform failing must not stop the other reminders
        log.exception("reminder for %s could not be posted", handoff.key)
        return False
    log.info("escalation of %s reminded (level %d, %.0f min)", handoff.key, level, waited)
    return True


async def close_idle(
    handoffs: HandoffStore,
    conversation: Conversation,
    escalation: EscalationSettings,
    *,
    now: datetime | None = None,
) -> list[int]:
    """Resolve threads with no message for `idle_resolve_hours`; the ids of those closed."""
    if escalation.idle_resolve_hours <= 0:
        return []
    now = now or datetime.now(UTC)
    closed: list[int] = []
    async with job_lock(handoffs.engine, "handoff:idle") as mine:
        if not mine:
            return closed
        before = now - timedelta(hours=escalation.idle_resolve_hours)
        for thread in await handoffs.idle_threads(before):
            if await conversation.resolve(thread.id, by="idle", now=now) is not None:
                closed.append(thread.id)
                metrics.IDLE_RESOLVED.inc()
    if closed:
        log.info("closed %d idle threads", len(closed))
    return closed


async def update_figures(handoffs: HandoffStore, *, now: datetime | None = None) -> Figures:
    """The handoff figures of the last FIGURES_WINDOW, also set as Prometheus gauges."""
    now = now or datetime.now(UTC)
    figures = await handoffs.figures(now - FIGURES_WINDOW, now)
    metrics.record_figures(figures)
    return figures


@dataclass
class HandoffJobs:
    """What the handoff jobs run on; `schedule` adds them to the server's scheduler."""

    store: ConversationStore
    conversation: Conversation
    escalation: EscalationSettings
    adapters: Sequence[Reachable]
    knowledge: KnowledgeBase | None = None
    faq: ManagedFaq | None = None

    async def remind(self) -> None:
        await _safely("remind", remind_unanswered(self.store, self.escalation, self.adapters))

    async def idle(self) -> None:
        await _safely("idle", close_idle(self.store.handoffs, self.conversation, self.escalation))

    async def figures(self) -> None:
        await _safely("figures", update_figures(self.store.handoffs))

    async def index_faq(self) -> None:
        if self.knowledge is None or self.faq is None:
            return
        async with job_lock(self.store.engine, "handoff:faq") as mine:
            if mine:
                await self.faq.refresh(self.knowledge)

    def schedule(self, scheduler: AsyncIOScheduler) -> None:
        """Add the jobs (each never overlaps itself; late runs coalesce)."""
        for job, seconds in (
            (self.remind, REMIND_EVERY),
            (self.idle, IDLE_EVERY),
            (self.figures, FIGURES_EVERY),
            (self.index_faq, FAQ_EVERY),
        ):
            name = job.__name__
            scheduler.add_job(
                job,
                IntervalTrigger(seconds=seconds),
                id=f"handoff:{name}",
                name=f"handoff {name}",
                max_instances=1,
                coalesce=True,
                replace_existing=True,
            )


async def _safely(name: str, work: Awaitable[object]) -> None:
    try:
        await work
    except Exception:  # the scheduler must keep running whatever one run does
        log.exception("handoff job %s crashed", name)
