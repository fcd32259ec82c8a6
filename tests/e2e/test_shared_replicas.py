"""Every replica is the whole service: two `teambot serve` replicas on PostgreSQL and a Chroma
server. An agent's reply sent from one replica's console reaches a web-chat page whose event
stream another replica serves (PostgreSQL LISTEN/NOTIFY), once; a file uploaded through one
replica's console is listed, refreshed and removed from the other (the bytes are in the
database or an S3 bucket — moto's S3 server here —, never on either replica's disk)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.e2e.test_live_replicas import console_client, database, replicas, upload
from tests.fakes.s3 import BUCKET, bucket_keys, create_bucket, moto_s3

pytestmark = pytest.mark.postgres
__all__ = ["database"]

REPLY = "我是客服小梅：请把工牌带到前台，十分钟内补办。 / Mei from support: bring your badge to the front desk."


async def _ask(page: httpx.AsyncClient, chat: str, thread: str, question: str) -> dict[str, Any]:
    body = {"chat_id": chat, "thread_id": thread, "message_id": uuid.uuid4().hex, "text": question}
    async with page.stream("POST", "/api/chat", json=body) as response:
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data: ") and '"final"' in line:
                answer: dict[str, Any] = json.loads(line[6:])["answer"]
                return answer
    pytest.fail("no final answer")


async def _thread_id(database: str, chat: str, thread: str) -> int:
    engine = create_async_engine(database, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            found = await conn.scalar(
                text("SELECT id FROM threads WHERE chat_id = :chat AND thread_id = :thread"),
                {"chat": chat, "thread": thread},
            )
    finally:
        await engine.dispose()
    assert found is not None
    return int(found)


async def test_a_console_reply_on_one_replica_reaches_a_page_open_on_the_other(
    tmp_path: Path, database: str
) -> None:
    chat, thread = f"c{uuid.uuid4().hex[:12]}", f"t{uuid.uuid4().hex[:12]}"
    async with replicas(tmp_path, database) as (first, second):
        async with httpx.AsyncClient(base_url=first, timeout=60) as page:
            await _ask(page, chat, thread, "How do I get a new badge?")
            escalated = await page.post(
                "/api/escalate", json={"chat_id": chat, "thread_id": thread, "language": "en"}
            )
            assert escalated.status_code == 200 and escalated.json()["escalated"], escalated.text

            heard: list[dict[str, Any]] = []
            listening = asyncio.Event()

            async def listen() -> None:
                url = f"/api/threads/{chat}/{thread}/events"
                async with page.stream("GET", url, timeout=None) as response:
                    assert response.status_code == 200
                    async for line in response.aiter_lines():
                        if line.startswith("retry:"):
                            listening.set()  # the page is registered on the first replica
                        elif line.startswith("data: "):
                            heard.append(json.loads(line[6:]))

            stream = asyncio.create_task(listen())
            try:
                await asyncio.wait_for(listening.wait(), 30)
                number = await _thread_id(database, chat, thread)
                console, csrf = await console_client(second)
                started = time.monotonic()
                try:
                    sent = await console.post(
                        f"/console/threads/{number}/reply",
                        data={"csrf": csrf, "text": REPLY, "back": "/escalations"},
                    )
                finally:
                    await console.aclose()
                assert sent.status_code == 303 and "notice=" in sent.headers["location"], sent.text
                while not heard and time.monotonic() - started < 10:
                    await asyncio.sleep(0.05)
                took = time.monotonic() - started
                await asyncio.sleep(1.5)  # a second delivery, if any, would be here by now
            finally:
                stream.cancel()
                await asyncio.gather(stream, return_exceptions=True)
    agents = [e for e in heard if e["type"] == "agent"]
    assert len(agents) == 1, heard
    assert "请把工牌带到前台" in agents[0]["text"] and "front desk" in agents[0]["html"]
    print(f"\nconsole reply on one replica -> page on the other in {took:.2f} s")


async def _refresh(console: httpx.AsyncClient, csrf: str, name: str) -> None:
    """Refresh now; a source added on the other replica is known here within
    `knowledge.reload_seconds` (1 s), so "no source named" is retried for a few seconds."""
    started = time.monotonic()
    while True:
        sent = await console.post(f"/console/sources/{name}/refresh", data={"csrf": csrf})
        assert sent.status_code == 303, sent.text
        if "notice=" in sent.headers["location"]:
            return
        assert time.monotonic() - started < 5, sent.headers["location"]
        await asyncio.sleep(0.2)


async def _progress(console: httpx.AsyncClient, name: str) -> dict[str, Any]:
    started = time.monotonic()
    state: dict[str, Any] = {}
    while time.monotonic() - started < 60:
        state = (await console.get("/console/sources/progress")).json()
        if name in state and not state[name]["running"]:
            return dict(state[name])
        await asyncio.sleep(0.2)
    pytest.fail(f"the refresh of {name} did not end in 60 s: {state}")


@contextlib.contextmanager
def file_store(kind: str) -> Iterator[dict[str, str]]:
    """The replicas' environment for `[files] store = kind`: for "s3", moto's S3 server on
    loopback with a fresh bucket (skipped when moto[server] is not installed)."""
    if kind == "database":
        yield {}
        return
    with moto_s3() as endpoint:
        yield {
            "TEAMBOT_FILES__STORE": "s3",
            "TEAMBOT_FILES__S3__ENDPOINT": endpoint,
            "TEAMBOT_FILES__S3__BUCKET": BUCKET,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


@pytest.mark.parametrize("store", ["database", "s3"])
async def test_an_upload_through_one_replica_is_listed_refreshed_and_removed_from_the_other(
    tmp_path: Path, database: str, store: str
) -> None:
    with file_store(store) as extra:
        if extra:
            await create_bucket(extra["TEAMBOT_FILES__S3__ENDPOINT"])
        await _upload_list_refresh_remove(tmp_path, database, extra)
        if extra:
            assert await bucket_keys(extra["TEAMBOT_FILES__S3__ENDPOINT"]) == []  # removed there
    for replica in ("a", "b"):  # neither kept a copy of its own
        assert not (tmp_path / replica / "uploads").exists()


async def _upload_list_refresh_remove(tmp_path: Path, database: str, extra: dict[str, str]) -> None:
    uri = "uploads/canteen.md"
    async with replicas(tmp_path, database, **extra) as (first, second):
        a, csrf_a = await console_client(first)
        b, csrf_b = await console_client(second)
        try:
            page = await upload(
                a, csrf_a, "canteen.md", "# Canteen\n\nLunch is served from 11:30 to 13:30.\n"
            )
            assert "已索引 / indexed" in page, page
            if extra:  # the bytes are in the bucket
                endpoint = extra["TEAMBOT_FILES__S3__ENDPOINT"]
                assert await bucket_keys(endpoint) == [f"teambot/{uri}"]
            assert uri in (await b.get("/console/sources/uploads")).text  # listed on the other

            await _refresh(b, csrf_b, "uploads")
            run = await _progress(b, "uploads")
            # the other replica reads the file from the shared store: nothing lost, nothing new
            assert run["result"] == "ok", run
            assert "0 removed, 1 unchanged, 0 failed" in run["summary"], run
            assert uri in (await a.get("/console/sources/uploads")).text

            deleted = await b.post(
                "/console/sources/uploads/documents/delete", data={"csrf": csrf_b, "uri": uri}
            )
            assert deleted.status_code == 303 and "notice=" in deleted.headers["location"]
            assert uri not in (await a.get("/console/sources/uploads")).text
            # the file went with it: a refresh on the first replica does not bring it back
            await _refresh(a, csrf_a, "uploads")
            run = await _progress(a, "uploads")
            assert run["result"] == "ok" and "0 added" in run["summary"], run
            assert uri not in (await b.get("/console/sources/uploads")).text
        finally:
            await a.aclose()
            await b.aclose()
