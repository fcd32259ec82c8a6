"""Knowledge changed while `teambot serve` runs, from another process, as an operator does it:
`teambot ingest DIR` is cited by the running server within 5 s, the bundled sample steps aside
for it, and after `teambot sources remove` the document is no longer cited."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import child_env, closed_port

CANTEEN = "When does the canteen serve lunch?"
ROOMS = "How do I book a meeting room?"


class Served:
    def __init__(self, url: str, workdir: Path, env: dict[str, str]) -> None:
        self.url, self.workdir, self.env = url, workdir, env

    def cited(self, question: str) -> list[dict[str, Any]]:
        body = {
            "chat_id": f"browser-{time.monotonic_ns()}",  # a new chat: no session needed
            "thread_id": f"t-{time.monotonic_ns()}",
            "message_id": f"m-{time.monotonic_ns()}",
            "text": question,
        }
        final: dict[str, Any] = {}
        with httpx.stream("POST", f"{self.url}/api/chat", json=body, timeout=30) as response:
            assert response.status_code == 200, response.read()
            for line in response.iter_lines():
                if line.startswith("data: ") and '"final"' in line:
                    final = json.loads(line[6:])
        citations: list[dict[str, Any]] = final["answer"]["citations"]
        return citations

    def teambot(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bot", *args],
            cwd=self.workdir,
            env={**self.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=120,
        )

    def within(self, seconds: float, question: str, check: Any) -> float:
        """Seconds until `check(citations)` holds (fails the test after `seconds`)."""
        started = time.monotonic()
        while True:
            citations = self.cited(question)
            if check(citations):
                return time.monotonic() - started
            if time.monotonic() - started > seconds:
                pytest.fail(f"not within {seconds} s: {citations}")
            time.sleep(0.2)


def serve(
    workdir: Path, sample_index: Path, **extra: str
) -> tuple[subprocess.Popen[bytes], Served]:
    """`teambot serve` in `workdir` with the sample index copied in, retrieval-only answers."""
    workdir.mkdir(parents=True, exist_ok=True)
    shutil.copytree(sample_index, workdir / "chroma")
    env = child_env(
        TEAMBOT_LLM__ENABLED="false",
        TEAMBOT_KNOWLEDGE__PERSIST_DIR=str(workdir / "chroma"),
        TEAMBOT_KNOWLEDGE__COLLECTION="test-kb",
        TEAMBOT_POLICY__USER_BURST="1000",
        TEAMBOT_POLICY__CHAT_BURST="1000",
        **extra,
    )
    port = closed_port()
    with (workdir / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(
                f"serve exited {process.returncode}:\n{(workdir / 'serve.log').read_text()}"
            )
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("teambot serve was not ready within 120 s")
        time.sleep(0.3)
    return process, Served(url, workdir, env)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, sample_index: Path) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("live")
    process, served = serve(workdir / "app", sample_index)
    try:
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _sources(citations: list[dict[str, Any]]) -> set[str]:
    return {c["source"] for c in citations}


def test_ingest_from_another_process_is_live_and_remove_takes_it_back(served: Served) -> None:
    assert "sample" in _sources(served.cited(ROOMS))  # the sample handbook answers at first
    kb = served.workdir / "kb"
    kb.mkdir()
    (kb / "canteen.md").write_text(
        "# Canteen\n\nThe canteen serves lunch from 11:30 to 13:30 on weekdays, on the third "
        "floor of building C.\n",
        encoding="utf-8",
    )
    (kb / "rooms.md").write_text(
        "# Meeting rooms\n\nBook a meeting room in the Roomie app: pick the floor, the time "
        "and press Reserve. Rooms hold 6 to 20 people.\n",
        encoding="utf-8",
    )
    done = served.teambot("ingest", str(kb))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "holds the knowledge folder" in done.stdout  # it went through the server
    assert "stepped aside" in done.stdout and "57 chunks" in done.stdout, done.stdout
    waited = served.within(5, CANTEEN, lambda c: "kb/canteen.md" in {x["location"] for x in c})
    print(f"\ningest -> cited by the running server in {waited:.2f} s")
    assert "sample" not in _sources(served.cited(ROOMS))  # the sample stepped aside
    assert "kb" in _sources(served.cited(ROOMS))

    listed = served.teambot("sources")
    assert listed.returncode == 0 and "kb" in listed.stdout and "sample" not in listed.stdout
    assert "added at run time" in listed.stdout, listed.stdout
    again = served.teambot("refresh", "kb")  # every source refreshes, however it was added
    assert again.returncode == 0 and "2 unchanged" in again.stdout, again.stdout + again.stderr

    removed = served.teambot("sources", "remove", "kb")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert "removed source kb: 2 documents, 2 chunks" in removed.stdout
    served.within(5, CANTEEN, lambda c: "kb" not in _sources(c))
    assert "sample" not in _sources(served.cited(ROOMS))  # the sample does not come back
    log = (served.workdir / "serve.log").read_text()
    assert "bundled sample handbook stepped aside" in log


def test_the_admin_api_wants_the_token(served: Served) -> None:
    refused = httpx.post(f"{served.url}/admin/knowledge/refresh", json={})
    assert refused.status_code == 403
    wrong = httpx.post(
        f"{served.url}/admin/knowledge/refresh", json={}, headers={"authorization": "Bearer x"}
    )
    assert wrong.status_code == 403
    token = json.loads((served.workdir / "chroma" / "server.json").read_text())["token"]
    proxied = httpx.post(
        f"{served.url}/admin/knowledge/refresh",
        json={"name": "nope"},
        headers={"authorization": f"Bearer {token}", "x-forwarded-for": "203.0.113.9"},
    )
    assert proxied.status_code == 403  # a reverse proxy on this host does not make it local
    info = served.workdir / "chroma" / "server.json"
    assert oct(info.stat().st_mode & 0o777) == "0o600"  # the token is the owner's alone
