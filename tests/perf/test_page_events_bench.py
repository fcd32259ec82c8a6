"""Benchmark: how long a web page event takes from one replica to a page open on another
(adapters/web/broadcast.py), through PostgreSQL LISTEN/NOTIFY and through Redis pub/sub.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_page_events_bench.py -s`.

Two WebAdapters in this process, each with its own bus (its own listening connection), stand
for two replicas; the second posts agent replies into a thread whose page is open on the first.
Short replies (a line) and long ones (24,000 Chinese characters: 24 NOTIFY chunks) are timed from
`finish` on the sender to the event in the other's page queue. Prints p50/p95/max per bus and
size; asserts only that every event arrived once.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from adapters.web.adapter import WebAdapter
from adapters.web.broadcast import Broadcast, PostgresBroadcast, RedisBroadcast
from engine.messages import Answer, Outcome, ThreadKey
from tests.helpers import PG_URL, closed_port

pytestmark = pytest.mark.perf
CORE: Any = object()
KEY = ThreadKey("web", "local", "bench", "thread")
SHORT = "**Mei** · support\n\nPlease bring your badge to the front desk."
LONG = "请带上工牌。" * 4000
ROUNDS = {"short": 200, "long": 20}


async def _measure(buses: list[Broadcast]) -> dict[str, list[float]]:
    first, second = (WebAdapter(CORE, broadcast=bus) for bus in buses)
    for replica in (first, second):
        await replica.start()
    try:
        await asyncio.sleep(1.0)  # both listening
        page, own = first.pages.listen(KEY), second.pages.listen(KEY)
        channel = second.reply_channel(KEY)
        assert channel is not None
        figures: dict[str, list[float]] = {}
        for size, text in (("short", SHORT), ("long", LONG)):
            figures[size] = []
            for _ in range(ROUNDS[size]):
                started = time.perf_counter()
                await channel.finish(Answer(text=text, outcome=Outcome.HANDED_OFF))
                event = await asyncio.wait_for(page.get(), 10)
                figures[size].append(time.perf_counter() - started)
                assert event["text"] == text
                own.get_nowait()  # the sender's own page: once, at once
        await asyncio.sleep(0.5)
        assert page.empty() and own.empty()
        return figures
    finally:
        for replica in (first, second):
            await replica.stop()


def _report(bus: str, figures: dict[str, list[float]]) -> None:
    load = os.getloadavg()
    for size, took in figures.items():
        ms = sorted(t * 1000 for t in took)
        p95 = ms[int(len(ms) * 0.95) - 1]
        print(
            f"\n{bus:<8} {size:<5} n={len(ms):<4} p50 {statistics.median(ms):6.1f} ms  "
            f"p95 {p95:6.1f} ms  max {ms[-1]:6.1f} ms  (load average {load[0]:.2f})"
        )


async def test_page_events_over_postgresql() -> None:
    engine = create_async_engine(PG_URL, connect_args={"timeout": 5})  # pooled, as served
    try:
        async with engine.connect():
            pass
    except Exception as error:
        await engine.dispose()
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({error})")
    try:
        buses: list[Broadcast] = [PostgresBroadcast(PG_URL, lambda: engine) for _ in "ab"]
        _report("postgres", await _measure(buses))
    finally:
        await engine.dispose()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_page_events_over_redis(tmp_path: Path) -> None:
    port = closed_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    try:
        await asyncio.sleep(0.5)
        url = f"redis://127.0.0.1:{port}/0"
        _report("redis", await _measure([RedisBroadcast(url) for _ in "ab"]))
    finally:
        server.terminate()
        server.wait(timeout=10)
