"""The retention policy: a daily purge of questions, answers and threads past `retention_days`."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from engine.store.conversations import ConversationStore
from jobs.lock import job_lock

log = logging.getLogger(__name__)


async def purge_expired(
    store: ConversationStore, retention_days: int, *, now: datetime | None = None
) -> dict[str, int] | None:
    """Purge rows older than `retention_days` (one replica at a time); None when it did not run."""
    if retention_days <= 0:
        return None
    cutoff = (now or datetime.now(UTC)) - timedelta(days=retention_days)
    async with job_lock(store.engine, "retention") as mine:
        if not mine:
            return None
        counts = await store.upkeep.purge(cutoff)
    log.info("retention: purged %s older than %s", counts, cutoff.isoformat(timespec="seconds"))
    return counts


def schedule_retention(
    scheduler: AsyncIOScheduler, store: ConversationStore, retention_days: int
) -> None:
    """Run the purge daily at 04:30 (after the default 03:00 knowledge refresh)."""

    async def run() -> None:
        try:
            await purge_expired(store, retention_days)
        except Exception:  # the scheduler must keep running whatever one run does
            log.exception("retention purge failed")

    scheduler.add_job(
        run,
        CronTrigger(hour=4, minute=30),
        id="retention:purge",
        name="retention purge",
        max_instances=1,
        coalesce=True,
        replace_existing=True,
    )
