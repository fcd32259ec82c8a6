"""A model server (or the proxy in front of it) answering a non-streaming call with a 200 that
is no chat completion — an HTML page, an SSE body, JSON cut short or of another shape — is an
unavailable model: the call fails in words, the breaker hears it, `doctor` says it, and the
asker's follow-up is searched as it is and answered."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from engine.config import LLMSettings
from engine.llm import LLMClient, LLMUnavailable
from engine.messages import Outcome
from knowledge import Embedder
from tests.fakes.sglang import FakeSGLang
from tests.helpers import make_core

ODD = ["html", "sse", "broken_json", "wrong_json"]
WORDS = "not an OpenAI chat completion or model list"


@pytest.fixture
async def client(fake_sglang: FakeSGLang) -> Any:
    llm = LLMClient(LLMSettings(base_url=fake_sglang.base_url, max_retries=0, breaker_failures=3))
    yield llm
    await llm.close()


@pytest.mark.parametrize("odd", ODD)
async def test_an_odd_reply_is_an_unavailable_model_and_the_breaker_hears_it(
    fake_sglang: FakeSGLang, client: LLMClient, odd: str
) -> None:
    fake_sglang.behave(odd_reply=odd)
    for _ in range(2):
        with pytest.raises(LLMUnavailable, match=WORDS):
            await client.complete([{"role": "user", "content": "hi"}])
    with pytest.raises(LLMUnavailable, match=WORDS):
        await client.tool_calls([{"role": "user", "content": "hi"}], [], max_tokens=16, seconds=5)
    assert client.breaker_open  # three odd replies in a row: retrieval-only from now on


@pytest.mark.parametrize("odd", ODD)
async def test_doctor_reports_an_odd_reply_in_words(
    fake_sglang: FakeSGLang, client: LLMClient, odd: str
) -> None:
    fake_sglang.behave(odd_reply=odd)
    report = await client.probe()
    assert report.reachable and WORDS in report.error, report.error
    fake_sglang.behave(odd_reply=odd, odd_models=True)  # a proxy in front of every path
    report = await client.probe()
    assert WORDS in report.error, report.error


async def test_a_follow_up_is_searched_as_asked_when_the_rewrite_gets_an_odd_reply(
    tmp_path: Path,
    embedder: Embedder,
    sample_index: Path,
    fake_sglang: FakeSGLang,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake_sglang.behave(reasoning="none")  # a model that does not think: rewrites are asked for
    core, kb = await make_core(tmp_path, embedder, sample_index, fake_sglang)
    try:
        await core.ask("How do I reset my VPN connection?", thread="t")
        fake_sglang.behave(reasoning="none", odd_reply="html")
        with caplog.at_level(logging.INFO, logger="engine.answer.followup"):
            answer, _ = await core.ask("and what if that does not work?", thread="t")
        assert answer is not None and answer.outcome is Outcome.ANSWERED, answer
        assert "follow-up rewrite failed" in caplog.text and WORDS in caplog.text
        assert not fake_sglang.requests[-2].get("stream")  # the rewrite was asked, and failed
    finally:
        await core.llm.close()
        await kb.close()
        await core.store.close()
