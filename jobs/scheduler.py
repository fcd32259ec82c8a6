"""The job scheduler of `teambot serve`: APScheduler's AsyncIOScheduler on the server's loop.

One refresh job per knowledge source on its cron (in knowledge.timezone, default the machine's
zone). A job never overlaps itself (max_instances=1; the catalog lease also keeps other
processes out), late runs are coalesced into one, and a run missed while the service was down
(the catalog's last start is older than the last scheduled time) runs once right at start.
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

log = logging.getLogger(__name__)

RELOAD_SECONDS = 60


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
    now = datetime.now(tz)
    for source in kb.sources:
        late = missed(source, tz, await kb.catalog.last_started(source.name), now)
        scheduler.add_job(
            refresh_source,
            trigger(source, tz),
            args=(kb, source.name),
            id=f"refresh:{source.name}",
            name=f"refresh knowledge source {source.name}",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
            replace_existing=True,
            **({"next_run_time": now} if late else {}),
        )
        if late:
            log.info("knowledge source %s missed its schedule: refreshing now", source.name)
    scheduler.add_job(
        reload_live,
        IntervalTrigger(seconds=RELOAD_SECONDS, timezone=tz),
        args=(kb,),
        id="knowledge:reload",
        max_instances=1,
        coalesce=True,
    )
    if start:
        scheduler.start()
    return scheduler
