"""The refresh jobs: one per source on its cron, never overlapping, missed runs run at start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from jobs.scheduler import missed, next_run, start_scheduler, zone
from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.catalog import RunRow, SourceRow

UTC_ZONE = zone("UTC")


def _source(root: Path, name: str, schedule: str = "0 3 * * *") -> SourceSettings:
    return SourceSettings(name=name, kind="directory", location=str(root), schedule=schedule)


@pytest.fixture
async def kb(tmp_path: Path, embedder: Embedder) -> AsyncIterator[KnowledgeBase]:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe canteen opens at 11:30.\n")
    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma",
        collection="test-kb",
        timezone="UTC",
        sources=[_source(docs, "fresh"), _source(docs, "stale", "*/30 * * * *")],
    )
    base = await KnowledgeBase.open(settings, embedder=embedder)
    yield base
    await base.close()


def test_missed_compares_the_last_start_with_the_schedule() -> None:
    daily = SourceSettings(name="d", kind="directory", location="/x")  # 03:00 every day
    now = datetime(2026, 3, 10, 9, 0, tzinfo=UTC)
    assert missed(daily, UTC_ZONE, None, now)  # never ran
    assert missed(
        daily, UTC_ZONE, datetime(2026, 3, 9, 3, 0, 5, tzinfo=UTC), now
    )  # 10th 03:00 missed
    assert not missed(daily, UTC_ZONE, datetime(2026, 3, 10, 3, 0, 5, tzinfo=UTC), now)
    assert next_run(daily, UTC_ZONE, now) == datetime(2026, 3, 11, 3, 0, tzinfo=UTC)
    shanghai = next_run(daily, zone("Asia/Shanghai"), now)
    assert shanghai is not None and shanghai.astimezone(UTC).hour == 19  # 03:00 +08:00


async def test_one_job_per_source_never_overlapping_and_coalesced(kb: KnowledgeBase) -> None:
    scheduler = await start_scheduler(kb, start=False)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert {"refresh:fresh", "refresh:stale", "knowledge:reload"} <= set(jobs)
    for name in ("fresh", "stale"):
        job = jobs[f"refresh:{name}"]
        assert (job.max_instances, job.coalesce, job.misfire_grace_time) == (1, True, None)
        assert job.args[1] == name


async def test_missed_run_runs_once_at_start(kb: KnowledgeBase) -> None:
    await kb.refresh("fresh")
    await kb.refresh("stale")
    long_ago = datetime.now(UTC) - timedelta(days=3)  # the service was down for three days
    async with kb.catalog.engine.begin() as conn:
        await conn.execute(
            update(SourceRow).where(SourceRow.name == "stale").values(last_started_at=long_ago)
        )

    scheduler = await start_scheduler(kb)
    try:
        for _ in range(500):
            await asyncio.sleep(0.02)
            async with kb.catalog.engine.connect() as conn:
                runs = (await conn.execute(select(RunRow.source))).scalars().all()
            if runs.count("stale") == 2:
                break
        await asyncio.sleep(0.3)  # give a (wrong) second catch-up run the chance to show
        async with kb.catalog.engine.connect() as conn:
            runs = (await conn.execute(select(RunRow.source))).scalars().all()
        assert runs.count("stale") == 2  # the first refresh + exactly one catch-up
        assert runs.count("fresh") == 1  # ran after the last 03:00: waits for the next one
        upcoming = scheduler.get_job("refresh:stale").next_run_time
        assert upcoming > datetime.now(UTC) and upcoming.minute in (0, 30)
    finally:
        scheduler.shutdown(wait=False)


async def test_sources_status_lists_configured_and_orphaned_sources(kb: KnowledgeBase) -> None:
    await kb.refresh("fresh")
    await kb.ingestor.ingest_documents([], source="old")  # a source no longer configured
    statuses = {s.name: s for s in await kb.statuses()}
    assert (statuses["fresh"].documents, statuses["fresh"].chunks, statuses["fresh"].result) == (
        1,
        1,
        "ok",
    )
    assert statuses["stale"].result == "never" and statuses["stale"].last_run is None
    assert statuses["old"].configured is False


async def test_sources_added_or_removed_elsewhere_get_or_lose_their_job(
    kb: KnowledgeBase, tmp_path: Path, embedder: Embedder
) -> None:
    scheduler = await start_scheduler(kb, start=False)
    other = await KnowledgeBase.open(kb.settings, embedder=embedder)  # another process
    try:
        added = tmp_path / "added"
        added.mkdir()
        await other.add_source(_source(added, "added", "15 4 * * *"))
        reload = scheduler.get_job("knowledge:reload")
        await reload.func()  # what the scheduler runs every reload_seconds
        job = scheduler.get_job("refresh:added")
        assert job is not None and job.args[1] == "added"
        await other.remove_source("added")
        await reload.func()
        assert scheduler.get_job("refresh:added") is None
        assert scheduler.get_job("refresh:fresh") is not None  # config sources stay
    finally:
        await other.close()
