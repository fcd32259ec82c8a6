"""`teambot serve` as a subprocess on a fresh data folder: the quickstart a newcomer runs."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.sglang import FakeSGLang


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Served:
    def __init__(self, url: str, process: subprocess.Popen[str], fake: FakeSGLang) -> None:
        self.url, self.process, self.fake = url, process, fake
        self.browser = httpx.Client(base_url=url)  # one browser: its session cookie owns browser-1

    def chat(
        self, text: str, *, thread: str = "t1", message_id: str | None = None
    ) -> list[dict[str, Any]]:
        body = {
            "chat_id": "browser-1",
            "thread_id": thread,
            "message_id": message_id or f"m-{time.monotonic_ns()}",
            "text": text,
        }
        events = []
        with self.browser.stream("POST", "/api/chat", json=body, timeout=30) as response:
            assert response.status_code == 200, response.read()
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data: "):
                    events.append(json.loads(line[6:]))
        return events


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """teambot serve with everything at its defaults except where data lives and the model URL."""
    workdir = tmp_path_factory.mktemp("serve")
    port = free_port()
    log_path = workdir / "serve.log"
    with FakeSGLang() as fake, log_path.open("w") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMBOT_")}
        env["TEAMBOT_LLM__BASE_URL"] = fake.base_url
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve", "--port", str(port)],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        try:
            while True:
                if process.poll() is not None:
                    output = log_path.read_text()
                    pytest.fail(f"teambot serve exited with {process.returncode}:\n{output}")
                try:
                    if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    pytest.fail("teambot serve did not become ready within 120 s")
                time.sleep(0.3)
            served = Served(url, process, fake)
            with served.browser:
                yield served
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
    assert (workdir / "data" / "teambot.db").exists()


def test_health_and_readiness(served: Served) -> None:
    assert httpx.get(f"{served.url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{served.url}/readyz").json()
    assert ready["status"] == "ready"
    assert ready["checks"]["database"] == "ok"
    assert ready["checks"]["knowledge_chunks"] > 0  # the sample handbook was indexed at start


def test_web_chat_page_is_served(served: Served) -> None:
    page = httpx.get(served.url)
    assert page.status_code == 200
    assert "<title>teambot</title>" in page.text and "/api/chat" in page.text


def test_streamed_model_answer_with_citations(served: Served) -> None:
    served.fake.behave(token_delay=0.02, reasoning_text="HIDDEN-REASONING")
    events = served.chat("How do I reset my VPN connection?")
    kinds = [event["type"] for event in events]
    assert kinds[0] == "open" and kinds[-1] == "final" and "update" in kinds
    final = events[-1]["answer"]
    assert final["outcome"] == "answered"
    assert final["citations"][0]["location"].endswith("vpn.md")
    assert not any("HIDDEN-REASONING" in json.dumps(event) for event in events)


def test_retrieval_only_when_the_model_server_fails(served: Served) -> None:
    served.fake.behave(fail_status=503, token_delay=0.0)
    try:
        events = served.chat("How many days of annual leave do I get?")
    finally:
        served.fake.behave(fail_status=None)
    final = events[-1]["answer"]
    assert final["outcome"] == "retrieval_only"
    assert final["text"].startswith("⚠️ Retrieval-only answer")
    assert final["citations"][0]["location"].endswith("leave-policy.md")


def test_same_message_id_is_answered_once(served: Served) -> None:
    first = served.chat("How do I reset my password?", message_id="dup-1")
    again = served.chat("How do I reset my password?", message_id="dup-1")
    assert first[-1]["type"] == "final"
    assert again == [{"type": "duplicate"}]


def test_feedback_is_recorded(served: Served) -> None:
    events = served.chat("How do I reset my password?")
    turn_id = events[-1]["answer"]["turn_id"]
    response = served.browser.post(
        "/api/feedback", json={"turn_id": turn_id, "chat_id": "browser-1", "value": "up"}
    )
    assert response.json() == {"status": "recorded"}
    stranger = httpx.post(  # another browser, no session: not its chat
        f"{served.url}/api/feedback",
        json={"turn_id": turn_id, "chat_id": "browser-1", "value": "down"},
    )
    assert stranger.status_code == 404
    bad = httpx.post(
        f"{served.url}/api/feedback", json={"turn_id": turn_id, "chat_id": "b", "value": "meh"}
    )
    assert bad.status_code == 422


def test_malformed_request_gets_a_clear_error(served: Served) -> None:
    response = httpx.post(f"{served.url}/api/chat", json={"text": "hi"})
    assert response.status_code == 422
    assert "thread_id" in response.text
    response = httpx.post(
        f"{served.url}/api/chat", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "not valid JSON" in response.text


def test_metrics_expose_the_conversation_series(served: Served) -> None:
    served.chat("How do I reset my VPN connection?")
    text = httpx.get(f"{served.url}/metrics").text
    for series in (
        'teambot_messages_received_total{platform="web"}',
        'teambot_answers_total{outcome="answered",platform="web"}',
        "teambot_first_visible_seconds_bucket",
        "teambot_answer_seconds_bucket",
        "teambot_retrieval_seconds_bucket",
        "teambot_model_prefix_cache_hit_ratio_bucket",
        "teambot_model_prompt_tokens_total",
        'teambot_adapter_connected{adapter="web",mode="http"} -1.0',
    ):
        assert series in text, series


def test_oversized_request_is_refused(served: Served) -> None:
    response = httpx.post(
        f"{served.url}/api/chat",
        content=b"x" * 2_000_000,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 413
    assert "max_body_bytes" in response.text
