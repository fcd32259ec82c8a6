"""Two `teambot serve` replicas on one PostgreSQL receive the same Slack events: each question
is answered once (the dedupe is a unique row, not memory)."""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    BOT_TOKEN,
    SIGNING_SECRET,
    FakeSlack,
    event_body,
    signed_headers,
    user_message,
)
from tests.helpers import PG_URL, child_env, closed_port

pytestmark = pytest.mark.postgres


@pytest.fixture
async def database() -> AsyncIterator[str]:
    """A fresh PostgreSQL database for the replicas, dropped afterwards."""
    admin = create_async_engine(
        PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT", connect_args={"timeout": 5}
    )
    name = f"teambot_e2e_{secrets.token_hex(4)}"
    try:
        async with admin.connect() as conn:
            await conn.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:  # unreachable or not allowed: nothing to test against
        await admin.dispose()
        pytest.skip(f"PostgreSQL at {PG_URL} cannot host a test database ({error})")
    try:
        yield PG_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def serve_env(database: str, model_url: str, **settings: str) -> dict[str, str]:
    """The environment of a `teambot serve` child answering Slack (HTTP mode) from the fake
    SGLang: this process's TEAMBOT_ variables and proxies left out, `settings` (TEAMBOT_ names)
    on top. The caller adds TEAMBOT_SLACK__API_URL once its FakeSlack runs."""
    env = child_env(
        TEAMBOT_STORAGE__URL=database,
        TEAMBOT_LLM__BASE_URL=model_url,
        TEAMBOT_KNOWLEDGE__COLLECTION="test-kb",
        TEAMBOT_SLACK__ENABLED="true",
        TEAMBOT_SLACK__MODE="http",
        TEAMBOT_SLACK__BOT_TOKEN=BOT_TOKEN,
        TEAMBOT_SLACK__SIGNING_SECRET=SIGNING_SECRET,
        **settings,
    )
    return env


async def start_replica(
    workdir: Path, sample_index: Path, env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], str]:
    workdir.mkdir()
    shutil.copytree(sample_index, workdir / "chroma")
    port = closed_port()
    with (workdir / "serve.log").open("wb") as log:  # the child keeps its own copy of the fd
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=workdir,
            env={**env, "TEAMBOT_KNOWLEDGE__PERSIST_DIR": str(workdir / "chroma")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


async def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    async with httpx.AsyncClient() as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                pytest.fail(f"replica exited with {process.returncode}:\n{log.read_text()}")
            try:
                if (await client.get(f"{url}/readyz", timeout=2)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.3)
    pytest.fail(f"replica at {url} not ready in 120 s:\n{log.read_text()}")


async def test_two_replicas_answer_each_event_once(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang, database: str
) -> None:
    env = serve_env(
        database,
        fake_sglang.base_url,
        TEAMBOT_SLACK__UPDATE_INTERVAL="0.2",
        TEAMBOT_POLICY__USER_BURST="100",
    )
    async with FakeSlack() as slack:
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        # the first replica migrates alone, as the README's Scale out section asks
        first, first_url = await start_replica(tmp_path / "a", sample_index, env)
        try:
            await wait_ready(first_url, first, tmp_path / "a" / "serve.log")
            second, second_url = await start_replica(tmp_path / "b", sample_index, env)
            try:
                await wait_ready(second_url, second, tmp_path / "b" / "serve.log")
                events = [
                    user_message(f"<@U0BOT> How many days of annual leave do I get? ({i})")
                    for i in range(8)
                ]
                async with httpx.AsyncClient(timeout=10) as client:

                    async def deliver(url: str, event: dict[str, object]) -> int:
                        body = json.dumps(event_body(event))
                        response = await client.post(
                            f"{url}/slack/events", content=body, headers=signed_headers(body)
                        )
                        return response.status_code

                    statuses = await asyncio.gather(
                        *(deliver(url, e) for e in events for url in (first_url, second_url))
                    )
                assert set(statuses) == {200}

                def finished() -> bool:
                    return len(slack.calls_to("chat.postMessage")) >= len(events)

                await slack.wait_for(finished, within=60)
                deadline = time.monotonic() + 60
                while len(fake_sglang.requests) < len(events) and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                await asyncio.sleep(2)  # a second answer, if any, would show up by now
                placeholders = slack.calls_to("chat.postMessage")
                threads = [call.get("thread_ts") for call in placeholders]
                assert sorted(threads) == sorted(e["ts"] for e in events)
                logs = "".join(
                    line
                    for name in ("a", "b")
                    for line in (tmp_path / name / "serve.log").read_text().splitlines(True)
                    if "WARNING" in line or "ERROR" in line or "chat.postMessage" in line
                )
                assert len(fake_sglang.requests) == len(events), logs
            finally:
                second.terminate()
                second.wait(timeout=30)
        finally:
            first.terminate()
            first.wait(timeout=30)


async def test_a_follow_up_reaching_the_other_replica_is_answered_once(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang, database: str
) -> None:
    """Whether a message without a mention is a follow-up comes from the store, not from the
    memory of the replica that answered: in HTTP mode Slack posts to whichever replica."""
    env = serve_env(database, fake_sglang.base_url, TEAMBOT_SLACK__UPDATE_INTERVAL="0.2")
    async with FakeSlack() as slack:
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        first, first_url = await start_replica(tmp_path / "a", sample_index, env)
        try:
            await wait_ready(first_url, first, tmp_path / "a" / "serve.log")
            second, second_url = await start_replica(tmp_path / "b", sample_index, env)
            try:
                await wait_ready(second_url, second, tmp_path / "b" / "serve.log")
                async with httpx.AsyncClient(timeout=10) as client:

                    async def deliver(url: str, event: dict[str, object]) -> None:
                        body = json.dumps(event_body(event))
                        response = await client.post(
                            f"{url}/slack/events", content=body, headers=signed_headers(body)
                        )
                        assert response.status_code == 200

                    question = user_message("<@U0BOT> How many days of annual leave do I get?")
                    await deliver(first_url, question)
                    await slack.wait_for(lambda: len(fake_sglang.requests) == 1, within=60)
                    follow_up = user_message(
                        "And can I carry them over?", kind="message", thread_ts=question["ts"]
                    )
                    # a thread the bot never took part in: not for the bot, on any replica
                    elsewhere = user_message(
                        "lunch at noon?", kind="message", thread_ts="1700000000.000001"
                    )
                    await deliver(second_url, elsewhere)
                    await deliver(second_url, follow_up)
                    await slack.wait_for(lambda: len(fake_sglang.requests) >= 2, within=60)
                    await asyncio.sleep(2)  # a second answer, if any, would show up by now
                posted = slack.calls_to("chat.postMessage")
                assert [call.get("thread_ts") for call in posted] == [question["ts"]] * 2
                assert len(fake_sglang.requests) == 2
                last = fake_sglang.requests[-1]["messages"][-1]["content"]
                assert "carry them over" in str(last)
            finally:
                second.terminate()
                second.wait(timeout=30)
        finally:
            first.terminate()
            first.wait(timeout=30)
