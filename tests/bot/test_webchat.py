"""The web chat's HTTP side: the stream keeps talking while the model thinks (so no proxy cuts
it), and with `[llm] enabled = false` the page and the answer say so in plain words instead of
"the language model is unavailable right now"."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import httpx
import pytest

from adapters.web import adapter as web_adapter
from engine.config import LLMSettings
from tests.bot.served import make_settings, serve
from tests.fakes.sglang import FakeSGLang


async def _events(client: httpx.AsyncClient, text: str) -> list[dict[str, object]]:
    thread = uuid.uuid4().hex
    body = {"chat_id": "c1", "thread_id": thread, "message_id": thread, "text": text}
    response = await client.post("/api/chat", json=body, timeout=60)
    assert response.status_code == 200, response.text
    return [
        json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")
    ]


async def test_the_stream_sends_keep_alives_while_the_model_thinks(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(web_adapter, "KEEP_ALIVE_SECONDS", 0.3)
    fake_sglang.behave(latency=2.0, answer="Full-time staff get **25 days** [1].")
    async with serve(make_settings(tmp_path, fake_sglang, None), monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            events = await _events(client, "How many days of annual leave do I get?")
    kinds = [e["type"] for e in events]
    first_text = kinds.index("update") if "update" in kinds else kinds.index("final")
    assert kinds[:first_text].count("thinking") >= 3, kinds
    final = events[-1]["answer"]
    assert isinstance(final, dict) and "<strong>25 days</strong>" in final["html"]


async def test_model_off_is_said_plainly(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, None)
    settings = settings.model_copy(update={"llm": LLMSettings(enabled=False)})
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            welcome = (await client.get("/api/welcome")).json()
            assert welcome["model"] is False and welcome["examples"]
            events = await _events(client, "How many days of annual leave do I get?")
            zh = await _events(client, "年假有多少天？")
    final = events[-1]["answer"]
    assert isinstance(final, dict) and final["outcome"] == "retrieval_only"
    assert "unavailable right now" not in final["text"]
    assert "No language model is set up here" in final["text"]
    assert "未配置语言模型" in zh[-1]["answer"]["text"]  # type: ignore[index]
    assert fake_sglang.requests == []  # the model was never called
