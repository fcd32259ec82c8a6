"""Benchmark: DingTalk callback frame -> ack, and -> first visible reply, against the fakes.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_dingtalk_latency.py -s`.
The real SDK and adapter over real WebSocket/HTTP on 127.0.0.1, a real core, the fake SGLang
streaming 50 tokens/s. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import statistics
import time

from adapters.dingtalk.adapter import DingTalkAdapter
from tests.contract.test_dingtalk import CARD_CREATE, WEBHOOK, settings_for
from tests.fakes.dingtalk import FakeDingTalk, bot_message
from tests.helpers import Core

QUESTIONS = [
    "How do I reset my VPN connection?",
    "How many days of annual leave do I get?",
    "How do I reset my password?",
    "Which printer is on the third floor?",
]
ROUNDS = 20


def _ms(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"p50 {statistics.median(values) * 1000:7.1f} ms   p90 {p90 * 1000:7.1f} ms"


async def _measure(core: Core, card: bool) -> None:
    core.fake.behave(token_delay=0.02)
    async with FakeDingTalk() as fake:
        changes = {"card_template_id": "tpl.schema"} if card else {}
        adapter = DingTalkAdapter(settings_for(fake, **changes), core.conversation)
        await adapter.start()
        acks, visible, done = [], [], []
        try:
            for i in range(ROUNDS):
                path = CARD_CREATE if card else WEBHOOK
                before = len(fake.sent(path))
                data = bot_message(QUESTIONS[i % 4], webhook=fake.webhook(), sender=f"u{i}")
                pushed = time.monotonic()
                frame = await fake.push(data)
                await fake.wait_for(lambda p=path, b=before: len(fake.sent(p)) > b)  # type: ignore[misc]
                visible.append(fake.sent(path)[before].at - pushed)
                await fake.ack(frame)
                acks.append(fake.acked_at[frame] - pushed)
                await adapter.drain()
                done.append(time.monotonic() - pushed)
        finally:
            await adapter.stop()
    mode = "AI card" if card else "markdown"
    print(f"\n[{mode}, {ROUNDS} messages]")
    print(f"  callback -> ack            : {_ms(acks)}")
    print(f"  callback -> first visible  : {_ms(visible)}")
    print(f"  callback -> answer complete: {_ms(done)}")


async def test_markdown_latency(core: Core) -> None:
    await _measure(core, card=False)


async def test_ai_card_latency(core: Core) -> None:
    await _measure(core, card=True)
