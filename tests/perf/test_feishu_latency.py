"""Benchmark: event → first card, and event → first streamed text, against the fakes.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_feishu_latency.py -s`.
The fake SGLang streams 50 tokens/s; the fake Feishu answers at once; [feishu] update_interval is
the production default (1.0 s), the only throttle. Prints figures only.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Iterator

import pytest

from adapters.feishu.adapter import FeishuAdapter
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import message_event
from tests.fakes.feishu_support import settings_for, settle
from tests.helpers import Core

QUESTIONS = [
    "How do I reset my VPN connection?",
    "How many days of annual leave do I get?",
    "How do I reset my password?",
    "Which printer is on the third floor?",
]
REPLY = r"/open-apis/im/v1/messages/[^/]+/reply"
ELEMENT = r"/open-apis/cardkit/v1/cards/[^/]+/elements/answer/content"


@pytest.fixture
def fake_feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def report(name: str, values: list[float]) -> None:
    print(
        f"{name:>34}: p50 {statistics.median(values) * 1000:7.1f} ms   "
        f"p90 {percentile(values, 0.9) * 1000:7.1f} ms   (n={len(values)})"
    )


async def measure(fake: FakeFeishu, adapter: FeishuAdapter, core: Core, via_ws: bool) -> None:
    core.fake.behave(token_delay=0.02)
    card, text = [], []
    for i in range(20 if via_ws else 40):
        message_id = f"om_perf_{via_ws}_{i}"
        # a different asker each time: the core rate-limits one person asking this fast
        event = message_event(QUESTIONS[i % 4], message_id=message_id, sender=f"ou_perf_{i}")
        started = time.monotonic()
        if via_ws:
            fake.push_event(event)
            await asyncio.to_thread(
                fake.wait_for, lambda m=message_id: bool(fake.calls_to("POST", f".*/{m}/reply"))
            )
        else:
            await asyncio.to_thread(
                adapter.dispatcher._do_without_validation, json.dumps(event).encode()
            )
        await settle(adapter)
        [reply] = fake.calls_to("POST", f".*/{message_id}/reply")
        card_id = reply.content["data"]["card_id"]
        streamed = [c for c in fake.calls_to("PUT", ELEMENT) if f"/{card_id}/" in c.path]
        card.append(reply.at - started)
        text.append(streamed[0].at - started)
    path = "long connection (ws frames)" if via_ws else "dispatcher (as the ws client calls)"
    print(f"\n{path}:")
    report("event → card shown", card)
    report("event → first streamed text", text)


async def test_feishu_latency_dispatcher(fake_feishu: FakeFeishu, core: Core) -> None:
    adapter = FeishuAdapter(settings_for(fake_feishu, update_interval=1.0), core.conversation)
    await adapter.start()
    try:
        await measure(fake_feishu, adapter, core, via_ws=False)
    finally:
        await adapter.stop()


async def test_feishu_latency_long_connection(fake_feishu: FakeFeishu, core: Core) -> None:
    settings = settings_for(fake_feishu, mode="long_connection", update_interval=1.0)
    adapter = FeishuAdapter(settings, core.conversation)
    await adapter.start()
    try:
        await measure(fake_feishu, adapter, core, via_ws=True)
    finally:
        await adapter.stop()
