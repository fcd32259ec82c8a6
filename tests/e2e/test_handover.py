"""A replica dies mid-answer while another is alive: the other one tells the asker within a
minute (the heartbeat lapses after 20 s), not after the answer deadline (the model's total
timeout + 60 s, six minutes by default). Two `teambot serve` replicas on PostgreSQL; a slowly
streaming model; the question comes through the web chat.

SIGKILL: the apology arrives on the thread's event stream served by the surviving replica, and
is stored in the thread (its transcript on any replica). SIGSTOP, then SIGCONT: the replica that
comes back after it was counted dead finishes writing, but its answer meets the fence and is not
posted: the asker hears once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from jobs.recovery import APOLOGY
from tests.e2e.test_live_replicas import chroma_server
from tests.e2e.test_replicas import database, serve_env, start_replica, wait_ready
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import FakeSlack

pytestmark = pytest.mark.postgres
__all__ = ["database"]  # the PostgreSQL fixture, shared with test_replicas

LONG_ANSWER = " ".join(f"word{i}" for i in range(400))
QUESTION = "How many days of annual leave do I get?"


def apology_in(event: dict[str, Any]) -> bool:
    """A page event carrying the apology: a bot message ("bot"), or, before page events named
    the bot's own messages, one shown like a person's reply ("agent")."""
    text = event.get("text") or (event.get("answer") or {}).get("text") or ""
    return APOLOGY.splitlines()[1] in str(text)


class Page:
    """A web chat page: its session cookie, its thread, what its event streams delivered."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.chat, self.thread = f"chat-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
        self.asked: list[dict[str, Any]] = []  # events of the question's own stream
        self.heard: list[tuple[float, dict[str, Any]]] = []  # thread events, with arrival

    async def ask(self, url: str, started: asyncio.Event) -> None:
        """POST the question and read its stream until it ends or breaks; `started` is set at
        the first streamed text."""
        body = {"chat_id": self.chat, "thread_id": self.thread, "message_id": "m-1",
                "text": QUESTION}  # fmt: skip
        try:
            async with self.client.stream("POST", f"{url}/api/chat", json=body) as response:
                assert response.status_code == 200
                async for line in response.aiter_lines():
                    if line.startswith("data: "):
                        self.asked.append(json.loads(line[6:]))
                        if self.asked[-1]["type"] == "update":
                            started.set()
        except httpx.TransportError:  # the replica died under it
            pass

    async def listen(self, url: str) -> None:
        """The thread's event stream on `url`, reconnected when it ends (as a browser does)."""
        where = f"{url}/api/threads/{self.chat}/{self.thread}/events"
        while True:
            try:
                async with self.client.stream("GET", where) as response:
                    assert response.status_code == 200, response.status_code
                    async for line in response.aiter_lines():
                        if line.startswith("data: "):
                            self.heard.append((time.monotonic(), json.loads(line[6:])))
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.5)

    def apologies(self) -> list[float]:
        return [at for at, event in self.heard if apology_in(event)]

    async def transcript(self, url: str) -> list[tuple[str, str]]:
        response = await self.client.get(f"{url}/api/threads/{self.chat}/{self.thread}")
        assert response.status_code == 200, response.text
        return [
            (m["role"], m.get("text") or (m.get("answer") or {}).get("text", ""))
            for m in response.json()["messages"]
        ]


@contextlib.asynccontextmanager
async def two_replicas(
    root: Path, sample_index: Path, env: dict[str, str]
) -> AsyncIterator[tuple[subprocess.Popen[bytes], str, str]]:
    """Replica A (migrates first), then B; yields A's process and both URLs."""
    a, a_url = await start_replica(root / "a", sample_index, env)
    processes = [a]
    try:
        await wait_ready(a_url, a, root / "a" / "serve.log")
        b, b_url = await start_replica(root / "b", sample_index, env)
        processes.append(b)
        await wait_ready(b_url, b, root / "b" / "serve.log")
        yield a, a_url, b_url
    finally:
        for process in processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.terminate()
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


async def test_a_killed_replicas_web_asker_hears_from_the_other_within_a_minute(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang, database: str
) -> None:
    fake_sglang.behave(answer=LONG_ANSWER, token_delay=0.5)  # 200 s of answer: still writing
    with chroma_server(tmp_path) as chroma:
        async with FakeSlack() as slack:
            env = serve_env(database, fake_sglang.base_url, TEAMBOT_KNOWLEDGE__CHROMA_URL=chroma)
            env["TEAMBOT_SLACK__API_URL"] = slack.api_url
            async with (
                two_replicas(tmp_path, sample_index, env) as (a, a_url, b_url),
                httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
            ):
                page = Page(client)
                started = asyncio.Event()
                asking = asyncio.create_task(page.ask(a_url, started))
                await asyncio.wait_for(started.wait(), 60)
                listening = asyncio.create_task(page.listen(b_url))  # a page open on B
                os.kill(a.pid, signal.SIGKILL)  # mid-answer
                killed = time.monotonic()
                a.wait(timeout=10)
                try:
                    while not page.apologies() and time.monotonic() - killed < 90:
                        await asyncio.sleep(0.2)
                    assert page.apologies(), (tmp_path / "b" / "serve.log").read_text()[-3000:]
                    took = page.apologies()[0] - killed
                    print(f"\nkilled mid-answer -> apology on B's event stream in {took:.1f} s")
                    assert took < 60
                    await asyncio.sleep(7)  # more beats and takeovers: still one apology
                    assert len(page.apologies()) == 1
                    said = await page.transcript(b_url)
                    assert said == [("me", QUESTION), ("bot", APOLOGY)]
                finally:
                    for task in (asking, listening):
                        task.cancel()
                    await asyncio.gather(asking, listening, return_exceptions=True)
                assert not any(e["type"] == "final" for e in page.asked)


async def test_a_replica_back_from_the_dead_does_not_answer_again(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang, database: str
) -> None:
    # 40 s of answer; paused for 12 s of it, longer than the lapse (4 s) and a few beats
    fake_sglang.behave(answer=" ".join(f"w{i}" for i in range(80)), token_delay=0.5)
    async with FakeSlack() as slack:
        env = serve_env(
            database,
            fake_sglang.base_url,
            TEAMBOT_SERVER__HEARTBEAT_SECONDS="1",
            TEAMBOT_SERVER__HEARTBEAT_LAPSE_SECONDS="4",
        )
        env["TEAMBOT_SLACK__API_URL"] = slack.api_url
        async with (
            two_replicas(tmp_path, sample_index, env) as (a, a_url, b_url),
            httpx.AsyncClient(timeout=httpx.Timeout(30, read=None)) as client,
        ):
            page = Page(client)
            started = asyncio.Event()
            asking = asyncio.create_task(page.ask(a_url, started))
            await asyncio.wait_for(started.wait(), 60)
            listening = asyncio.create_task(page.listen(b_url))
            a.send_signal(signal.SIGSTOP)  # hung mid-answer: its heartbeat stands still
            try:
                stopped = time.monotonic()
                while not page.apologies() and time.monotonic() - stopped < 30:
                    await asyncio.sleep(0.2)
                assert page.apologies(), (tmp_path / "b" / "serve.log").read_text()[-3000:]
                await asyncio.sleep(max(0.0, 12 - (time.monotonic() - stopped)))
                a.send_signal(signal.SIGCONT)
                await asyncio.wait_for(asking, 90)  # A writes on, and ends without a final
                await asyncio.sleep(3)
            finally:
                a.send_signal(signal.SIGCONT)
                listening.cancel()
                await asyncio.gather(listening, return_exceptions=True)
            assert [e["type"] for e in page.asked if e["type"] == "final"] == []
            assert len(page.apologies()) == 1
            assert await page.transcript(b_url) == [("me", QUESTION), ("bot", APOLOGY)]
            log = (tmp_path / "a" / "serve.log").read_text()
            assert "not posted: another replica took the turn over" in log
            assert "was counted dead by the others" in log
