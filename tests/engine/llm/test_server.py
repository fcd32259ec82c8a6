"""engine.llm against the fake server as a real one behaves: what it says about itself, its
context limit, and how answers end (length, error chunks, teambot's own time limit)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from engine.config import LLMSettings
from engine.llm import (
    Delta,
    LLMClient,
    LLMContextExceeded,
    LLMServerError,
    LLMTimeout,
    LLMUnavailable,
)
from tests.fakes.sglang import FakeSGLang, prompt_tokens_of, tokenize

QUESTION = [{"role": "user", "content": "How do I set up the VPN? 怎么设置VPN？"}]
MakeClient = Callable[..., LLMClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[LLMClient] = []

    def make(base_url: str, **overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "base_url": base_url,
            "first_token_timeout": 3.0,
            "idle_timeout": 2.0,
            "total_timeout": 10.0,
            "max_retries": 0,
            **overrides,
        }
        clients.append(LLMClient(LLMSettings(**options)))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


async def collect(client: LLMClient, messages: list[dict[str, str]] = QUESTION) -> list[Delta]:
    return [delta async for delta in client.stream_chat(messages)]


async def test_sglang_says_its_context_slots_and_reasoning_parser(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(context=16384, slots=3)
    client = make_client(fake_sglang.base_url)
    info = await client.server_info()
    assert (info.kind, info.context, info.slots) == ("sglang", 16384, 12)
    assert info.reasoning_parser == "deepseek-r1" and info.tokenize
    assert client.concurrency == 12
    assert client.budget().context == 16384
    assert await client.counter.count("重置 VPN") == len(tokenize("重置 VPN"))


async def test_llamacpp_props_give_context_slots_and_the_template(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(flavour="llamacpp", context=4096, slots=2, reasoning="open_ended")
    client = make_client(fake_sglang.base_url)
    info = await client.server_info()
    assert (info.kind, info.context, info.slots, info.opens_think) == ("llama.cpp", 4096, 2, True)
    assert client.concurrency == 2
    budget = client.budget()
    assert (budget.context, budget.completion) == (4096, 2048)
    # a configured bound and a smaller configured context win
    configured = make_client(fake_sglang.base_url, max_concurrency=5, context_size=3000)
    await configured.server_info()
    assert configured.concurrency == 5 and configured.budget().context == 3000


async def test_concurrency_follows_the_servers_slots(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(flavour="llamacpp", slots=2, token_delay=0.01)
    client = make_client(fake_sglang.base_url)
    await asyncio.gather(*(collect(client) for _ in range(5)))
    assert fake_sglang.max_in_flight == 2


@pytest.mark.parametrize("flavour", ["sglang", "llamacpp"])
async def test_prompt_over_the_context_is_its_own_error_not_a_server_fault(
    fake_sglang: FakeSGLang, make_client: MakeClient, flavour: str
) -> None:
    fake_sglang.behave(flavour=flavour, context=64)
    client = make_client(fake_sglang.base_url, breaker_failures=1, context_size=100_000)
    long = [{"role": "user", "content": "请帮我看看这个问题 " * 20}]
    with pytest.raises(LLMContextExceeded) as err:
        await collect(client, long)
    assert err.value.n_ctx == 64
    assert not client.breaker_open
    assert client.budget().context == 64  # learned from the refusal


async def test_length_finish_reaches_the_caller_and_the_breaker_stays_closed(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(answer="word " * 100, reasoning="none")
    client = make_client(fake_sglang.base_url, max_tokens=20, breaker_failures=1)
    deltas = await collect(client)
    assert deltas[-1].finish_reason == "length"
    assert len("".join(d.content for d in deltas).split()) == 20
    assert not client.breaker_open


async def test_the_context_filling_up_ends_with_length(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    prompt = len(prompt_tokens_of(QUESTION))
    fake_sglang.behave(answer="word " * 100, reasoning="none", context=prompt + 7)
    deltas = await collect(make_client(fake_sglang.base_url))
    assert deltas[-1].finish_reason == "length"
    assert len("".join(d.content for d in deltas).split()) == 7


async def test_error_chunk_mid_stream_is_a_server_fault(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(reasoning="none", answer="one two three four five", error_after_tokens=2)
    fake_sglang.behave(error_message="CUDA error: an illegal memory access")
    client = make_client(fake_sglang.base_url, breaker_failures=1)
    deltas: list[Delta] = []
    with pytest.raises(LLMServerError, match="illegal memory access") as err:
        async for delta in client.stream_chat(QUESTION):
            deltas.append(delta)
    assert err.value.after_output and not err.value.context
    assert "".join(d.content for d in deltas) == "one two"
    assert client.breaker_open


async def test_context_error_chunk_is_not_a_breaker_failure(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(reasoning="none", answer="one two three four", error_after_tokens=1)
    client = make_client(fake_sglang.base_url, breaker_failures=1)
    with pytest.raises(LLMServerError) as err:
        await collect(client)
    assert err.value.context  # "Context size has been exceeded.": a full pool, not a dead server
    assert not client.breaker_open


async def test_teambots_own_total_timeout_is_not_a_server_fault(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(reasoning="none", answer="w " * 200, token_delay=0.02)
    client = make_client(fake_sglang.base_url, total_timeout=0.5, breaker_failures=1)
    with pytest.raises(LLMTimeout) as err:
        await collect(client)
    assert err.value.which == "total_timeout" and err.value.own_limit
    assert not client.breaker_open


async def test_a_completed_stream_resets_the_failure_count(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    client = make_client(fake_sglang.base_url, breaker_failures=3)
    fake_sglang.behave(fail_status=503, fail_times=2)
    for _ in range(2):
        with pytest.raises(LLMUnavailable):
            await collect(client)
    status = client.status()
    assert status.startswith("failing (2 in a row") and "still asked" in status
    await collect(client)
    assert client.status() == "ok"
    # a stream that dies mid-answer again and again opens the breaker (it used to reset at
    # the first token, so such a server was never given a rest)
    fake_sglang.behave(reasoning="none", answer="a b c d", cut_after_tokens=1)
    for _ in range(3):
        with pytest.raises(Exception):  # noqa: B017 - LLMStreamBroken, after output
            await collect(client)
    assert client.breaker_open


async def test_a_model_name_never_decides_that_answers_are_held(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    """A non-thinking model named like a reasoning one streams from the first word."""
    fake_sglang.behave(
        reasoning="none", model="acme/reasoning-r1-think", answer="w " * 30, token_delay=0.02
    )
    client = make_client(fake_sglang.base_url)
    seen: list[tuple[float, Delta]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    async for delta in client.stream_chat(QUESTION):
        seen.append((loop.time() - start, delta))
    first = next(t for t, d in seen if d.content)
    assert first < seen[-1][0] - 0.3


async def test_reasoning_setting_overrides_the_server(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(reasoning="open_ended", reasoning_text="SECRET plan")
    held = make_client(fake_sglang.base_url, reasoning="opens_think")
    content = "".join(d.content for d in await collect(held))
    assert "SECRET" not in content and content.strip()


async def test_a_server_that_never_answers_does_not_hold_up_discovery(
    make_client: MakeClient,
) -> None:
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        await reader.read(-1)  # accept, read, never answer

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        client = make_client(f"http://127.0.0.1:{port}/v1", first_token_timeout=0.5)
        loop = asyncio.get_running_loop()
        started = loop.time()
        info = await client.server_info()
        assert loop.time() - started < 1.5
        assert info.kind == "openai" and info.context is None
        assert client.budget().context == 8192  # nothing reported: the default
        await client.close()
        for writer in writers:
            writer.close()
            await writer.wait_closed()
