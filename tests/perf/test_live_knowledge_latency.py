"""Benchmark: from a knowledge change committing to the first answer that cites it.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_live_knowledge_latency.py -s`.
20 changes each, timed from the moment the change is committed (the CLI command returned, the
upload was answered) until a question through the web chat API cites the new document:

- embedded default: `teambot serve` running, `teambot ingest DIR` from another process (through
  the server's admin API);
- scaled out: two replicas on PostgreSQL and a Chroma server; uploaded through one replica's
  console, asked on the other (noticed through the catalog generation, polled every second).

Prints p50 and max; asserts only the issue's 5 s bound on the max.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

import pytest

from tests.e2e.test_live_knowledge import serve
from tests.e2e.test_live_replicas import (
    console_client,
    database,
    replicas,
    until_cited,
    upload,
)

pytestmark = pytest.mark.perf
CHANGES = 20
__all__ = ["database"]


def fact(i: int) -> str:
    return f"# Locker {i}\n\nLocker number {i} opens with the code word zephyr{i}quartz.\n"


def report(label: str, seconds: list[float]) -> None:
    print(
        f"\n{label}: {len(seconds)} changes, change -> cited p50 {statistics.median(seconds):.2f} s, "
        f"max {max(seconds):.2f} s"
    )
    assert max(seconds) < 5


def test_embedded_ingest_to_cited(tmp_path: Path, sample_index: Path) -> None:
    process, served = serve(tmp_path / "app", sample_index)
    try:
        kb = served.workdir / "kb"
        kb.mkdir()
        seconds = []
        for i in range(CHANGES):
            (kb / f"locker-{i}.md").write_text(fact(i), encoding="utf-8")
            done = served.teambot("ingest", str(kb))
            assert done.returncode == 0, done.stdout + done.stderr
            location = f"kb/locker-{i}.md"
            seconds.append(
                served.within(
                    5,
                    f"What code word opens locker number {i}, zephyr{i}quartz?",
                    lambda c, where=location: where in {x["location"] for x in c},
                )
            )
        report("embedded (teambot ingest -> teambot serve)", seconds)
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.mark.postgres
async def test_two_replicas_upload_to_cited(tmp_path: Path, database: str) -> None:
    async with replicas(tmp_path, database) as (first, second):
        client, csrf = await console_client(first)
        try:
            seconds = []
            for i in range(CHANGES):
                page = await upload(client, csrf, f"locker-{i}.md", fact(i))
                assert "已索引 / indexed" in page
                seconds.append(
                    await until_cited(
                        second,
                        f"What code word opens locker number {i}, zephyr{i}quartz?",
                        f"uploads/locker-{i}.md",
                        5,
                    )
                )
                await asyncio.sleep(0)
        finally:
            await client.aclose()
        report("two replicas (console upload on A -> answer on B)", seconds)
