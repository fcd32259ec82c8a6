"""Benchmark: Slack event received -> placeholder posted -> first streamed text, in Socket Mode.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_slack_latency.py -s`.
The fake SGLang streams at a fixed 50 tokens/s; the fake Slack timestamps each Web API call as it
arrives, so the figures cover WebSocket delivery, Bolt dispatch, the ack, the core (dedupe row,
retrieval stand-in, prompt) and the Web API round trip. Prints figures; asserts nothing about speed.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from adapters.slack.adapter import SlackAdapter
from adapters.slack.config import SlackSettings
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import APP_TOKEN, BOT_TOKEN, BOT_USER, FakeSlack, user_message
from tests.fakes.slack_core import make_slack_core

ROUNDS = 20
ANSWER = " ".join(["The VPN resets when you quit the client and sign in again [1]."] * 4)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_event_to_placeholder_and_first_text(tmp_path: Path, fake_sglang: FakeSGLang) -> None:
    fake_sglang.behave(answer=ANSWER, token_delay=0.02)  # 50 tokens/s
    core = await make_slack_core(tmp_path, fake_sglang)
    async with FakeSlack() as slack:
        settings = SlackSettings(
            enabled=True,
            bot_token=BOT_TOKEN,  # type: ignore[arg-type]
            app_token=APP_TOKEN,  # type: ignore[arg-type]
            api_url=slack.api_url,
        )  # production defaults otherwise: update_interval 1.5 s
        adapter = SlackAdapter(settings, core.conversation)
        await adapter.start()
        placeholder, first_text, ack = [], [], []
        try:
            for i in range(ROUNDS):
                seen = len(slack.calls)
                # a different asker each round: the core limits how fast one person may ask
                event = user_message(f"<@{BOT_USER}> How do I reset my VPN? ({i})", user=f"U0P{i}")
                sent = time.monotonic()
                envelope = await slack.send_event(event)
                acked = await slack.wait_ack(envelope)
                posted = await slack.wait_for(
                    lambda seen=seen: next(
                        (c for c in slack.calls[seen:] if c.method == "chat.postMessage"), None
                    )
                )
                edited = await slack.wait_for(
                    lambda seen=seen: next(
                        (c for c in slack.calls[seen:] if c.method == "chat.update"), None
                    )
                )
                await adapter.drain()
                ack.append(acked.at - sent)
                placeholder.append(posted.at - sent)
                first_text.append(edited.at - sent)
        finally:
            await adapter.stop()
            await core.close()
    print()
    for name, values in [
        ("event -> ack", ack),
        ("event -> placeholder", placeholder),
        ("event -> first streamed text", first_text),
    ]:
        print(
            f"{name:>30}: p50 {statistics.median(values) * 1000:7.1f} ms   "
            f"p90 {percentile(values, 0.9) * 1000:7.1f} ms   max {max(values) * 1000:7.1f} ms"
        )
