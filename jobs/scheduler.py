"""The job scheduler of `teambot serve`: APScheduler's AsyncIOScheduler on the server's loop.

One refresh job per knowledge source on its cron (in knowledge.timezone, default the machine's
zone), whether the source is in the config file or was added at run time. A job never overlaps
itself (max_instances=1; the catalog lease also keeps other processes out), late runs are
coalesced into one, and a run missed while the service was down (the catalog's last start is
older than the last scheduled time) runs once right at start.

Every `knowledge.reload_seconds` the live index is reloaded when the catalog's generation moved
(a change by the CLI, a replica or a job elsewhere), and the refresh jobs follow the sources.
"""

from __future__ import annotations

import logging
from datetime import datetime, tzinfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from tzlocal import get_localzone

from jobs.refresh import refresh_source, reload_live
from knowledge import KnowledgeBase, SourceSettings
from knowledge.registry import UNSCHEDULED

log = logging.getLogger(__name__)


def zone(name: str) -> tzinfo:
    """The schedules' time zone: `name` (IANA, e.g. "Asia/Shanghai"), or the machine's."""
    if not name:
        return get_localzone()
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def trigger(source: SourceSettings, tz: tzinfo) -> CronTrigger:
    return CronTrigger.from_crontab(source.schedule, timezone=tz)


def next_run(source: SourceSettings, tz: tzinfo, now: datetime | None = None) -> datetime | None:
    """When the source's cron fires next after `now`."""
    now = now or datetime.now(tz)
    fire: datetime | None = trigger(source, tz).get_next_fire_time(None, now)
    return fire


def next_cron(schedule: str, tz: tzinfo, now: datetime | None = None) -> datetime | None:
    """When a cron expression fires next after `now`."""
    now = now or datetime.now(tz)
    fire: datetime | None = CronTrigger.from_crontab(schedule, timezone=tz).get_next_fire_time(
        None, now
    )
    return fire


def missed(
    source: SourceSettings, tz: tzinfo, last_started: datetime | None, now: datetime
) -> bool:
    """Whether a scheduled time passed since the last run began (or the source never ran)."""
    if last_started is None:
        return True
    due: datetime | None = trigger(source, tz).get_next_fire_time(None, last_started)
    return due is not None and due <= now


async def start_scheduler(kb: KnowledgeBase, *, start: bool = True) -> AsyncIOScheduler:
    """Build (and start) the scheduler with one job per source; missed runs run now."""
    tz = zone(kb.settings.timezone)
    scheduler = AsyncIOScheduler(timezone=tz)
    # the reload check runs every second: APScheduler's "Running job" lines would drown the log
    # (each job logs its own outcome)
    logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)
    await sync_jobs(scheduler, kb, tz, catch_up=True)

    async def reload() -> None:
        if await reload_live(kb):
            await sync_jobs(scheduler, kb, tz)

    scheduler.add_job(
        reload,
        IntervalTrigger(seconds=kb.settings.reload_seconds, timezone=tz),
        id="knowledge:reload",
        max_instances=1,
        coalesce=True,
    )
    if start:
        scheduler.start()
    return scheduler


def scheduled(kb: KnowledgeBase) -> list[SourceSettings]:
    """The sources that refresh on a clock (not uploads or the managed FAQ)."""
    return [s for s in kb.sources if kb.origin(s.name) not in UNSCHEDULED]


async def sync_jobs(
    scheduler: AsyncIOScheduler, kb: KnowledgeBase, tz: tzinfo, *, catch_up: bool = False
) -> None:
    """One refresh job per scheduled source: add new ones, drop removed ones."""
    now = datetime.now(tz)
    wanted = {f"refresh:{s.name}": s for s in scheduled(kb)}
    for job in scheduler.get_jobs():
        if job.id.startswith("refresh:") and job.id not in wanted:
            job.remove()
            log.info("knowledge source %s is gone: its refresh job is removed", job.id[8:])
    for job_id, source in wanted.items():
        existing = scheduler.get_job(job_id)
        if existing is not None and existing.kwargs.get("schedule") == source.schedule:
            continue
        late = catch_up and missed(source, tz, await kb.catalog.last_started(source.name), now)
        scheduler.add_job(
            refresh_source,
            trigger(source, tz),
            args=(kb, source.name),
            kwargs={"schedule": source.schedule},
            id=job_id,
            name=f"refresh knowledge source {source.name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **({"next_run_time": now} if late else {}),
        )
        if late:
            log.info("knowledge source %s missed its schedule: refreshing now", source.name)
