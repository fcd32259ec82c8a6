"""Benchmark: the latency a web lookup adds to a question, against the local fakes.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_web_latency.py -s`.
50 distinct questions (no cache hits): search on the fake SearXNG, then the top 3 pages fetched
concurrently over real HTTP on 127.0.0.1, main text extracted, trimmed to the token budget.
Prints p50/p99; asserts nothing about speed (the machine decides those).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator

import pytest

from engine.weblookup import WebLookup, WebSettings
from tests.fakes.searx import FakeWeb


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@pytest.fixture
def fake_web() -> Iterator[FakeWeb]:
    with FakeWeb(results=["/page/normal", "/page/other", "/page/injection"]) as fake:
        yield fake


async def measure(lookup: WebLookup) -> list[float]:
    await lookup.lookup("warm-up question", "en")  # imports trafilatura, opens connections
    seconds: list[float] = []
    for i in range(50):
        started = time.monotonic()
        report = await lookup.lookup(f"question number {i} about teambot", "en")
        seconds.append(time.monotonic() - started)
        assert len(report.sources) == 3 and all(s.full_page for s in report.sources)
    return seconds


def show(name: str, seconds: list[float]) -> None:
    print(
        f"   {name:<34} p50 {statistics.median(seconds) * 1000:6.1f} ms   "
        f"p99 {percentile(seconds, 0.99) * 1000:6.1f} ms"
    )


async def test_added_latency_of_a_lookup(fake_web: FakeWeb) -> None:
    def settings(cache_ttl: float) -> WebSettings:
        return WebSettings(
            mode="on_request",
            searxng_url=fake_web.url,
            allow_hosts=["127.0.0.1:*"],  # the fakes are the "intranet" here
            fetch_pages=3,
            cache_ttl=cache_ttl,
        )

    print("\n   web lookup, 50 distinct questions, search + top 3 pages fetched:")
    cold = WebLookup(settings(0))
    try:
        show("no cache (every page fetched)", await measure(cold))
    finally:
        await cold.close()
    warm = WebLookup(settings(600))
    try:
        show("page cache on (search each time)", await measure(warm))
        hits = []
        for i in range(50):
            started = time.monotonic()
            assert (await warm.lookup(f"question number {i} about teambot", "en")).cached
            hits.append(time.monotonic() - started)
        show("repeated question (result cache)", hits)
    finally:
        await warm.close()
