"""kill -9 in the middle of an answer, restart at once: the sweeper apologises in the thread, once,
within its period, and the lost question is in the audit record."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from jobs.recovery import APOLOGY
from tests.e2e.test_replicas import serve_env, start_replica, wait_ready
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    FakeSlack,
    event_body,
    signed_headers,
    user_message,
)

TOTAL_TIMEOUT = 1.0
SWEEP = 2.0  # [server] recovery_sweep_seconds
DEADLINE = 4.0  # [server] recovery_deadline_seconds: longer than any live answer here
QUESTION = "How many days of annual leave do I get?"


async def test_question_lost_to_a_crash_gets_an_apology_after_restart(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    import httpx

    env = serve_env(
        f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}",
        fake_sglang.base_url,
        TEAMBOT_LLM__TOTAL_TIMEOUT=str(TOTAL_TIMEOUT),
        TEAMBOT_LLM__FIRST_TOKEN_TIMEOUT=str(TOTAL_TIMEOUT),
        TEAMBOT_SERVER__RECOVERY_SWEEP_SECONDS=str(SWEEP),
        TEAMBOT_SERVER__RECOVERY_DEADLINE_SECONDS=str(DEADLINE),
    )
    fake_sglang.behave(hang_before_first=True)  # the answer is in flight when the process dies
    async with FakeSlack() as slack:
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        first, url = await start_replica(tmp_path / "first", sample_index, env)
        try:
            await wait_ready(url, first, tmp_path / "first" / "serve.log")
            event = user_message(f"<@U0BOT> {QUESTION}")
            body = json.dumps(event_body(event))
            async with httpx.AsyncClient() as client:
                response = await client.post(
                    f"{url}/slack/events", content=body, headers=signed_headers(body)
                )
            assert response.status_code == 200
            sent = time.monotonic()
            await slack.wait_for(lambda: slack.calls_to("chat.postMessage"), within=30)
            os.kill(first.pid, signal.SIGKILL)  # mid-answer: the placeholder is up, no answer yet
            first.wait(timeout=10)
            killed = time.monotonic()
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        fake_sglang.behave(hang_before_first=False)
        # restarted at once, on the same database (the sample index is copied per workdir)
        second, url = await start_replica(tmp_path / "second", sample_index, env)
        assert time.monotonic() - killed < 5
        try:
            await wait_ready(url, second, tmp_path / "second" / "serve.log")
            ready = time.monotonic()

            def apologies() -> list[dict[str, object]]:
                return [c for c in slack.calls_to("chat.postMessage") if "ask it again" in str(c)]

            await slack.wait_for(apologies, within=DEADLINE + 2 * SWEEP + 10)
            # the deadline passed while it started: the first sweeps find the question
            took = time.monotonic() - max(ready, sent + DEADLINE)
            await asyncio.sleep(3 * SWEEP)  # more sweeps: still one apology
            found = apologies()
            assert len(found) == 1, found
            assert found[0].get("thread_ts") == event["ts"]
            assert "请再问一次" in str(found[0]) and APOLOGY.splitlines()[1][:20] in str(found[0])
            assert took < 2 * SWEEP + 3
        finally:
            second.terminate()
            second.wait(timeout=30)
    # the audit record keeps what was asked
    engine = create_async_engine(env["TEAMBOT_STORAGE__URL"])
    async with engine.connect() as conn:
        questions = (await conn.execute(text("SELECT question, answer FROM turns"))).all()
    await engine.dispose()
    assert [(q, a) for q, a in questions] == [(QUESTION, APOLOGY)]
