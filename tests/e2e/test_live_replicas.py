"""Scaled out: two `teambot serve` replicas on PostgreSQL and a real Chroma server (started from
the chromadb package on loopback). A file uploaded through one replica's console is cited by the
other within 5 s: the catalog's generation tells it to reload, the vectors are on the server."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_replicas import database, wait_ready
from tests.helpers import child_env, closed_port, sign_in

pytestmark = pytest.mark.postgres
PASSWORD = "replica console password"
CHROMA = Path(sys.executable).with_name("chroma")

__all__ = ["database"]  # the fixture, shared with the dedupe test


@contextlib.contextmanager
def chroma_server(folder: Path) -> Iterator[str]:
    """`chroma run` on a free loopback port; yields its URL."""
    if not CHROMA.exists():
        pytest.skip(f"no chroma command beside {sys.executable} (pip install chromadb)")
    port = closed_port()
    log = folder / "chroma.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CHROMA), "run", "--path", str(folder / "db"), "--host", "127.0.0.1",
             "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                pytest.fail(f"chroma exited {process.returncode}:\n{log.read_text()}")
            try:
                if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"chroma not up in 60 s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def replica_env(database: str, chroma_url: str) -> dict[str, str]:
    env = child_env(
        TEAMBOT_STORAGE__URL=database,
        TEAMBOT_KNOWLEDGE__CHROMA_URL=chroma_url,
        TEAMBOT_KNOWLEDGE__COLLECTION="live-kb",
        TEAMBOT_KNOWLEDGE__SEED_SAMPLE="false",
        TEAMBOT_LLM__ENABLED="false",
        TEAMBOT_CONSOLE__PASSWORD=PASSWORD,
        TEAMBOT_POLICY__USER_BURST="1000",
        TEAMBOT_POLICY__CHAT_BURST="1000",
    )
    return env


def start(workdir: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    workdir.mkdir(parents=True)
    port = closed_port()
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=workdir,
            env={**env, "TEAMBOT_KNOWLEDGE__UPLOADS_DIR": str(workdir / "uploads")},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return process, f"http://127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def replicas(root: Path, database: str, **extra: str) -> AsyncIterator[tuple[str, str]]:
    """A Chroma server and two replicas (the first migrates alone), `extra` in their
    environment; yields their URLs."""
    with chroma_server(root) as chroma:
        env = {**replica_env(database, chroma), **extra}
        first, first_url = start(root / "a", env)
        second: subprocess.Popen[bytes] | None = None
        try:
            await wait_ready(first_url, first, root / "a" / "serve.log")
            second, second_url = start(root / "b", env)
            await wait_ready(second_url, second, root / "b" / "serve.log")
            yield first_url, second_url
        finally:
            for process in (second, first):
                if process is not None:
                    process.terminate()
                    process.wait(timeout=30)


async def console_client(url: str) -> tuple[httpx.AsyncClient, str]:
    """A client logged in to the console at `url`, and its CSRF token."""
    client = httpx.AsyncClient(base_url=url, timeout=60)
    login = await sign_in(client, "admin", PASSWORD)
    assert login.status_code == 303, login.text
    page = await client.get("/console/sources")
    found = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert page.status_code == 200 and found, page.text[:500]
    return client, found.group(1)


async def upload(client: httpx.AsyncClient, csrf: str, name: str, text: str) -> str:
    response = await client.post(
        "/console/sources/upload",
        data={"csrf": csrf},
        files=[("files", (name, text.encode(), "text/markdown"))],
    )
    assert response.status_code == 200, response.text[:500]
    return response.text


async def citations(url: str, question: str) -> list[dict[str, Any]]:
    body = {
        "chat_id": f"replica-test-{time.monotonic_ns()}",  # a new chat each time: no session
        "thread_id": f"t-{time.monotonic_ns()}",
        "message_id": f"m-{time.monotonic_ns()}",
        "text": question,
    }
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("POST", f"{url}/api/chat", json=body) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: ") and '"final"' in line:
                    found: list[dict[str, Any]] = json.loads(line[6:])["answer"]["citations"]
                    return found
    return []


async def until_cited(url: str, question: str, location: str, within: float) -> float:
    started = time.monotonic()
    while True:
        found = await citations(url, question)
        if any(c["location"] == location for c in found):
            return time.monotonic() - started
        if time.monotonic() - started > within:
            pytest.fail(f"{location} not cited by {url} within {within} s: {found}")
        await asyncio.sleep(0.1)


async def test_an_upload_through_one_replica_is_cited_by_the_other(
    tmp_path: Path, database: str
) -> None:
    async with replicas(tmp_path, database) as (first, second):
        client, csrf = await console_client(first)
        try:
            page = await upload(
                client,
                csrf,
                "parking.md",
                "# Parking\n\nVisitor parking permits are issued at the front desk of building "
                "A; a permit is valid for one day.\n",
            )
            assert "已索引 / indexed" in page, page
            waited = await until_cited(
                second, "Where do I get a visitor parking permit?", "uploads/parking.md", 5
            )
            print(f"\nupload on one replica -> cited by the other in {waited:.2f} s")
            removed = await client.post("/console/sources/uploads/remove", data={"csrf": csrf})
            assert removed.status_code == 303
        finally:
            await client.aclose()
        started = time.monotonic()
        while any(
            c["source"] == "uploads"
            for c in await citations(second, "Where do I get a visitor parking permit?")
        ):
            assert time.monotonic() - started < 5, "the removal did not reach the other replica"
            await asyncio.sleep(0.1)
