"""Benchmark: time from a question to the first streamed character, against the fake SGLang.

Run on demand: `make perf` or `.venv/bin/python -m pytest tests/perf/test_core_latency.py -s`.
Prints figures; asserts nothing about speed (the machine decides those).
"""

from __future__ import annotations

import io
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from adapters.terminal.reply import ConsoleReplyChannel
from adapters.web.adapter import WebReplyChannel
from engine.config import PolicySettings
from engine.messages import Outcome
from engine.policy import Policy
from tests.helpers import Core, inbound

QUESTIONS = [
    "How do I reset my VPN connection?",
    "How many days of annual leave do I get?",
    "How do I reset my password?",
    "Which printer is on the third floor?",
]


def unlimited(core: Core) -> None:
    """A benchmark asks far faster than a person: lift the per-user and per-chat limits."""
    core.conversation._policy = Policy(
        PolicySettings(
            user_burst=1000, user_per_minute=10_000, chat_burst=10_000, chat_per_minute=100_000
        )
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_first_streamed_character_in_process(core: Core) -> None:
    """Conversation.handle → first visible update, with the fake streaming 50 tokens/s."""
    unlimited(core)
    core.fake.behave(token_delay=0.02)
    first_visible, first_token, retrieval, total = [], [], [], []
    for i in range(40):
        reply = WebReplyChannel()
        started = time.monotonic()
        answer = await core.conversation.handle(inbound(QUESTIONS[i % 4], f"p{i}"), reply)
        assert answer is not None and answer.outcome is Outcome.ANSWERED, answer
        assert answer.timings.first_visible is not None
        first_visible.append(answer.timings.first_visible)
        first_token.append(answer.timings.first_token or 0.0)
        retrieval.append(answer.timings.retrieval)
        total.append(time.monotonic() - started)
    print()
    for name, values in [
        ("retrieval", retrieval),
        ("first token", first_token),
        ("first visible", first_visible),
        ("whole answer", total),
    ]:
        print(
            f"{name:>14}: p50 {statistics.median(values) * 1000:7.1f} ms   "
            f"p99 {percentile(values, 0.99) * 1000:7.1f} ms"
        )


async def test_first_streamed_character_console(core: Core) -> None:
    """The `teambot ask` path: ConsoleReplyChannel's first visible text, model already loaded."""
    from rich.console import Console

    unlimited(core)
    core.fake.behave(token_delay=0.02)
    console = Console(file=io.StringIO(), force_terminal=False)
    values = []
    for i in range(20):
        started = time.monotonic()
        reply = ConsoleReplyChannel(console, started=started)
        answer = await core.conversation.handle(inbound(QUESTIONS[i % 4], f"c{i}"), reply)
        assert answer is not None and answer.outcome is Outcome.ANSWERED, answer
        assert reply.first_visible is not None
        values.append(reply.first_visible)
    print(f"\n   ask → first character (warm): p50 {statistics.median(values) * 1000:.1f} ms")


def test_cold_ask_command(tmp_path: Path, sample_index: Path, fake_sglang) -> None:  # type: ignore[no-untyped-def]
    """`teambot ask` as a fresh process: imports, model load, answer."""
    shutil.copytree(sample_index, tmp_path / "chroma")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMBOT_")}
    env.update(
        TEAMBOT_LLM__BASE_URL=fake_sglang.base_url,
        TEAMBOT_KNOWLEDGE__PERSIST_DIR=str(tmp_path / "chroma"),
        TEAMBOT_KNOWLEDGE__COLLECTION="test-kb",
    )
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "bot", "ask", QUESTIONS[0]],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    assert process.stdout is not None
    first = process.stdout.read(1)
    first_at = time.monotonic() - started
    rest = process.stdout.read()
    process.stdout.close()
    process.wait()
    total = time.monotonic() - started
    assert first and process.returncode == 0, rest
    print(f"\n   cold `teambot ask`: first output {first_at:.2f} s, done {total:.2f} s")
