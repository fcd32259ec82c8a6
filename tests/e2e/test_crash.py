"""kill -9 in the middle of an answer, restart: the asker gets an apology in the thread, once."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path

from bot.recovery import APOLOGY
from tests.e2e.test_replicas import serve_env, start_replica, wait_ready
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    FakeSlack,
    event_body,
    signed_headers,
    user_message,
)

TOTAL_TIMEOUT = 1.0
GRACE = TOTAL_TIMEOUT + 10  # bot.server: answers younger than this may still be in flight elsewhere


async def test_question_lost_to_a_crash_gets_an_apology_after_restart(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    import httpx

    env = serve_env(
        f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}",
        fake_sglang.base_url,
        TEAMBOT_LLM__TOTAL_TIMEOUT=str(TOTAL_TIMEOUT),
        TEAMBOT_LLM__FIRST_TOKEN_TIMEOUT=str(TOTAL_TIMEOUT),
    )
    fake_sglang.behave(hang_before_first=True)  # the answer is in flight when the process dies
    async with FakeSlack() as slack:
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        first, url = await start_replica(tmp_path / "first", sample_index, env)
        try:
            await wait_ready(url, first, tmp_path / "first" / "serve.log")
            event = user_message("<@U0BOT> How many days of annual leave do I get?")
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
        finally:
            if first.poll() is None:
                first.kill()
                first.wait()
        fake_sglang.behave(hang_before_first=False)
        await asyncio.sleep(max(0.0, sent + GRACE + 1 - time.monotonic()))
        second, url = await start_replica(tmp_path / "second", sample_index, env)
        try:
            await wait_ready(url, second, tmp_path / "second" / "serve.log")

            def apologies() -> list[dict[str, object]]:
                return [c for c in slack.calls_to("chat.postMessage") if "ask it again" in str(c)]

            await slack.wait_for(apologies, within=30)
            await asyncio.sleep(1)
            found = apologies()
            assert len(found) == 1
            assert found[0].get("thread_ts") == event["ts"]
            assert "请再问一次" in str(found[0]) and APOLOGY.splitlines()[1][:20] in str(found[0])
        finally:
            second.terminate()
            second.wait(timeout=30)
