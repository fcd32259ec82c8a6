"""The knowledge refresh job: one run of one source, logged, never raising into the scheduler."""

from __future__ import annotations

import logging

from knowledge import KnowledgeBase, RefreshReport

log = logging.getLogger(__name__)


async def refresh_source(kb: KnowledgeBase, name: str, schedule: str = "") -> RefreshReport | None:
    """Refresh `name` now; the report is also in the catalog (`teambot sources` shows it).
    (`schedule` only tells the scheduler which cron the job was made for.)"""
    try:
        report = await kb.refresh(name)
    except Exception:  # the scheduler must keep running whatever one source does
        log.exception("knowledge refresh of %s crashed", name)
        return None
    level = logging.WARNING if report.result in ("failed", "partial") else logging.INFO
    log.log(level, "knowledge refresh %s: %s", report.result, report.summary())
    return report


async def reload_live(kb: KnowledgeBase) -> bool:
    """Pick up changes another process (`teambot refresh`, a replica) committed; True when
    there were any."""
    try:
        if await kb.reload():
            log.info("knowledge index reloaded from the catalog: %d chunks live", len(kb.live))
            return True
    except Exception:
        log.exception("reloading the knowledge index failed")
    return False
