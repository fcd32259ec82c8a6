"""Stops and crashes of real `teambot serve` processes in the middle of answers.

SIGTERM: answers in flight get their grace period ([slack] stop_timeout), then the asker is told
in place of the half-written answer, and the sweeper does not apologise again after the restart.
Two replicas on PostgreSQL, one killed: the sweepers of the survivor and of the restarted replica
apologise once between them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_replicas import database, serve_env, start_replica, wait_ready
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import FakeSlack, event_body, signed_headers, user_message

__all__ = ["database"]  # the PostgreSQL fixture, shared with test_replicas

SWEEP = 2.0
DEADLINE = 4.0
WRITES = ("chat.postMessage", "chat.update", "chat.appendStream", "chat.stopStream")


def env_for(url: str, model: str, slack: FakeSlack, **extra: str) -> dict[str, str]:
    env = serve_env(
        url,
        model,
        TEAMBOT_SERVER__RECOVERY_SWEEP_SECONDS=str(SWEEP),
        TEAMBOT_SERVER__RECOVERY_DEADLINE_SECONDS=str(DEADLINE),
        TEAMBOT_SLACK__UPDATE_INTERVAL="0.2",
        **extra,
    )
    env["TEAMBOT_SLACK__API_URL"] = slack.api_url
    return env


async def ask(url: str, question: str) -> dict[str, Any]:
    event = user_message(f"<@U0BOT> {question}")
    body = json.dumps(event_body(event))
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(
            f"{url}/slack/events", content=body, headers=signed_headers(body)
        )
    assert response.status_code == 200
    return event


def apologies(slack: FakeSlack) -> list[Any]:
    return [c for c in slack.calls_to("chat.postMessage") + slack.calls_to("chat.update")
            if "ask it again" in str(c)]  # fmt: skip


def last_words(slack: FakeSlack) -> str:
    writes = sorted((c for m in WRITES for c in slack.calls if c.method == m), key=lambda c: c.at)
    return str(writes[-1].args) if writes else ""


async def test_sigterm_mid_answer_tells_the_asker_once(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(hang_after_tokens=4)  # streams half an answer, then nothing
    async with FakeSlack() as slack:
        env = env_for(
            f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}",
            fake_sglang.base_url,
            slack,
            TEAMBOT_SLACK__STOP_TIMEOUT="1",
            TEAMBOT_LLM__TOTAL_TIMEOUT="120",
            TEAMBOT_LLM__IDLE_TIMEOUT="120",
        )
        first, url = await start_replica(tmp_path / "first", sample_index, env)
        try:
            await wait_ready(url, first, tmp_path / "first" / "serve.log")
            await ask(url, "How many days of annual leave do I get?")
            await slack.wait_for(lambda: slack.calls_to("chat.update"), within=30)  # half written
            first.send_signal(signal.SIGTERM)
            # waited in a thread: the fake Slack runs on this loop and must answer meanwhile
            await asyncio.to_thread(first.wait, 60)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        assert "ask it again" in last_words(slack), last_words(slack)  # never the fragment
        assert len(apologies(slack)) == 1
        fake_sglang.behave(hang_after_tokens=None)
        second, url = await start_replica(tmp_path / "second", sample_index, env)
        try:
            await wait_ready(url, second, tmp_path / "second" / "serve.log")
            await asyncio.sleep(DEADLINE + 2 * SWEEP)  # sweeps run: the asker was told already
            assert len(apologies(slack)) == 1
        finally:
            second.terminate()
            second.wait(timeout=30)


@pytest.mark.postgres
async def test_two_replicas_one_killed_one_apology(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang, database: str
) -> None:
    fake_sglang.behave(hang_before_first=True)
    async with FakeSlack() as slack:
        env = env_for(
            database,
            fake_sglang.base_url,
            slack,
            TEAMBOT_LLM__TOTAL_TIMEOUT="120",
            TEAMBOT_LLM__FIRST_TOKEN_TIMEOUT="120",
        )
        a, a_url = await start_replica(tmp_path / "a", sample_index, env)
        processes = [a]
        try:
            await wait_ready(a_url, a, tmp_path / "a" / "serve.log")
            b, b_url = await start_replica(tmp_path / "b", sample_index, env)
            processes.append(b)
            await wait_ready(b_url, b, tmp_path / "b" / "serve.log")
            event = await ask(a_url, "How many days of annual leave do I get?")
            await slack.wait_for(lambda: slack.calls_to("chat.postMessage"), within=30)
            os.kill(a.pid, signal.SIGKILL)
            a.wait(timeout=10)
            killed = time.monotonic()
            fake_sglang.behave(hang_before_first=False)
            again, again_url = await start_replica(tmp_path / "a2", sample_index, env)
            processes.append(again)
            assert time.monotonic() - killed < 5
            await wait_ready(again_url, again, tmp_path / "a2" / "serve.log")
            await slack.wait_for(lambda: apologies(slack), within=DEADLINE + 4 * SWEEP + 10)
            await asyncio.sleep(3 * SWEEP)  # both replicas keep sweeping
            found = apologies(slack)
            assert len(found) == 1, found
            assert found[0].get("thread_ts") == event["ts"]
        finally:
            for process in processes:
                if process.poll() is None:
                    process.terminate()
                    process.wait(timeout=30)
