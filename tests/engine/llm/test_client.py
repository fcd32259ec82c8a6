"""engine.llm.LLMClient against the fake SGLang over real HTTP (tests/fakes/sglang.py)."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
from typing import Any

import httpx
import pytest

from engine.config import LLMSettings
from engine.llm import (
    Delta,
    LLMClient,
    LLMEmptyAnswer,
    LLMError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
    ThinkSplitter,
)
from engine.messages import Usage
from tests.fakes.sglang import DEFAULT_REASONING, FakeSGLang, default_answer, tokenize

QUESTION = [
    {"role": "user", "content": "Passages:\n[1] VPN setup guide\n\nHow do I set up the VPN?"}
]
ANSWER = default_answer(QUESTION)
PLAIN_MODEL = "Qwen/Qwen2.5-7B-Instruct"  # a model that does not think
PLAIN_ANSWER = "<b>bold</b> and 1 < 2: no thinking here, just words that stream one by one."

MakeClient = Callable[..., LLMClient]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[LLMClient] = []

    def make(
        base_url: str, clock: Callable[[], float] = time.monotonic, **overrides: Any
    ) -> LLMClient:
        options: dict[str, Any] = {
            "base_url": base_url,
            "first_token_timeout": 3.0,
            "idle_timeout": 2.0,
            "total_timeout": 10.0,
            **overrides,
        }
        clients.append(LLMClient(LLMSettings(**options), clock=clock))
        return clients[-1]

    yield make
    for client in clients:
        await client.close()


async def collect(
    client: LLMClient, messages: list[dict[str, str]] = QUESTION, into: list[Delta] | None = None
) -> tuple[str, str, list[Delta]]:
    deltas = [] if into is None else into
    async for delta in client.stream_chat(messages):
        deltas.append(delta)
    return "".join(d.content for d in deltas), "".join(d.reasoning for d in deltas), deltas


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


async def test_separate_reasoning_stays_out_of_content(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    content, reasoning, deltas = await collect(make_client(fake_sglang.base_url))
    assert content == ANSWER
    assert reasoning == DEFAULT_REASONING
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage is not None
    assert sum(1 for d in deltas if d.content) > 3  # streamed, not in one piece
    body = fake_sglang.requests[0]
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.6, 0.95, 2048)
    assert body["messages"] == QUESTION


@pytest.mark.parametrize("mode", ["inline", "open_ended"])
@pytest.mark.parametrize("chunk_chars", [None, 1, 3, 5])
async def test_inline_think_is_stripped_even_when_tags_split(
    fake_sglang: FakeSGLang, make_client: MakeClient, mode: str, chunk_chars: int | None
) -> None:
    # open_ended: llama.cpp's /props shows a chat template that opens <think> itself
    flavour = "llamacpp" if mode == "open_ended" else "sglang"
    fake_sglang.behave(reasoning=mode, chunk_chars=chunk_chars, flavour=flavour)
    content, reasoning, deltas = await collect(make_client(fake_sglang.base_url))
    assert content == ANSWER
    assert reasoning.strip() == DEFAULT_REASONING
    assert not any("<" in d.content or "think" in d.content for d in deltas)


async def test_non_thinking_server_streams_content_as_it_comes(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(
        reasoning="none",
        model=PLAIN_MODEL,
        token_delay=0.02,
        answer=PLAIN_ANSWER,
    )
    seen: list[tuple[float, Delta]] = []
    start = time.monotonic()
    async for delta in make_client(fake_sglang.base_url).stream_chat(QUESTION):
        seen.append((time.monotonic() - start, delta))
    assert "".join(d.content for _, d in seen) == PLAIN_ANSWER
    assert "".join(d.reasoning for _, d in seen) == ""
    first_content = next(t for t, d in seen if d.content)
    assert first_content < seen[-1][0] - 0.1  # the first words came well before the end


async def test_orphan_close_tag_on_unrecognised_model_is_learned(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    """The documented trade-off: without the hold rule the first answer shows the reasoning,
    later answers do not."""
    fake_sglang.behave(reasoning="open_ended", model="my-private-model")
    client = make_client(fake_sglang.base_url)
    first, _, _ = await collect(client)
    assert "</think>" not in first and first.endswith(ANSWER)
    content, reasoning, _ = await collect(client)
    assert content == ANSWER and reasoning.strip() == DEFAULT_REASONING
    async with httpx.AsyncClient() as http:  # or say so up front; a caller's client stays open
        forced = LLMClient(
            LLMSettings(base_url=fake_sglang.base_url), http_client=http, open_think=True
        )
        content, reasoning, _ = await collect(forced)
        assert content == ANSWER and reasoning.strip() == DEFAULT_REASONING
        await forced.close()
        assert not http.is_closed


async def test_usage_reports_prefix_cache_hits(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    client = make_client(fake_sglang.base_url)
    history = [
        {"role": "user", "content": "Instructions: answer from the passages. " * 5},
        {"role": "assistant", "content": "Sure."},
    ]
    *_, first = (await collect(client, [*history, QUESTION[0]]))[2]
    *_, second = (
        await collect(
            client,
            [
                *history,
                QUESTION[0],
                {"role": "assistant", "content": ANSWER},
                {"role": "user", "content": "And on Linux?"},
            ],
        )
    )[2]
    assert first.usage is not None and first.usage.cached_tokens == 0
    # the first prompt and the answer the server generated for it (RadixAttention keeps both)
    reused = first.usage.prompt_tokens + 1 + len(tokenize(ANSWER))
    assert second.usage is not None and second.usage.cached_tokens == reused
    assert second.usage.completion_tokens > 0
    fake_sglang.behave(cache_report=False)
    *_, third = (await collect(client))[2]
    assert third.usage is not None and third.usage.cached_tokens is None


async def test_model_is_resolved_once_from_v1_models(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(model="org/served-model-r1")
    client = make_client(fake_sglang.base_url, model="")
    await collect(client)
    await collect(client)
    assert [b["model"] for b in fake_sglang.requests] == ["org/served-model-r1"] * 2
    assert fake_sglang.hits.count("GET /v1/models") == 1
    fixed = make_client(fake_sglang.base_url, model="pinned")
    await collect(fixed)
    assert fake_sglang.requests[-1]["model"] == "pinned"


async def test_unreachable_server_fails_fast_then_opens_the_breaker() -> None:
    url = closed_port_url()
    client = LLMClient(LLMSettings(base_url=url))  # default timeouts and retries
    try:
        for _ in range(3):
            start = time.monotonic()
            with pytest.raises(LLMUnavailable) as err:
                await collect(client)
            assert time.monotonic() - start < 2.0
            assert not err.value.after_output
        assert url in str(err.value) and "TEAMBOT_LLM__BASE_URL" in str(err.value)
        assert client.breaker_open
        start = time.monotonic()
        with pytest.raises(LLMUnavailable, match="circuit breaker"):
            await collect(client)
        assert time.monotonic() - start < 0.05
    finally:
        await client.close()


async def test_breaker_half_opens_after_reset_and_closes_on_success(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(fail_status=503)
    now = [1000.0]
    client = make_client(
        fake_sglang.base_url,
        clock=lambda: now[0],
        max_retries=0,
        breaker_failures=2,
        breaker_reset=30,
    )
    for _ in range(2):
        with pytest.raises(LLMUnavailable, match="HTTP 503"):
            await collect(client)
    assert client.breaker_open
    with pytest.raises(LLMUnavailable, match="circuit breaker"):
        await client.complete(QUESTION)
    assert len(fake_sglang.requests) == 2  # the open breaker did not call the server
    now[0] += 29.9
    assert client.breaker_open  # not yet
    now[0] += 0.2
    fake_sglang.behave(fail_status=None)
    assert not client.breaker_open
    assert (await collect(client))[0] == ANSWER
    assert not client.breaker_open


async def test_5xx_before_first_token_is_retried(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(fail_status=500, fail_times=2)
    content, _, _ = await collect(make_client(fake_sglang.base_url))
    assert content == ANSWER
    assert len(fake_sglang.requests) == 3
    fake_sglang.behave(fail_status=500, fail_times=None)
    with pytest.raises(LLMUnavailable, match="HTTP 500"):
        await collect(make_client(fake_sglang.base_url, max_retries=1))
    assert len(fake_sglang.requests) == 5


async def test_hang_before_first_token_times_out(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(hang_before_first=True)
    client = make_client(fake_sglang.base_url, first_token_timeout=0.3)
    start = time.monotonic()
    with pytest.raises(LLMTimeout, match="first_token_timeout") as err:
        await collect(client)
    assert 0.25 < time.monotonic() - start < 1.0
    assert not err.value.after_output
    assert len(fake_sglang.requests) == 1  # a slow server is not hit again


async def test_hang_mid_stream_keeps_partial_then_idle_timeout(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(hang_after_tokens=3)
    deltas: list[Delta] = []
    with pytest.raises(LLMTimeout, match="idle_timeout") as err:
        await collect(make_client(fake_sglang.base_url, idle_timeout=0.3), into=deltas)
    assert "".join(d.content for d in deltas) == "I saw your"
    assert err.value.after_output


async def test_cut_mid_stream_is_broken_and_not_retried(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(cut_after_tokens=3)
    deltas: list[Delta] = []
    with pytest.raises(LLMStreamBroken) as err:
        await collect(make_client(fake_sglang.base_url), into=deltas)
    assert "".join(d.content for d in deltas) == "I saw your"
    assert err.value.after_output
    assert len(fake_sglang.requests) == 1


async def test_total_timeout_bounds_a_slow_answer(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(token_delay=0.1)
    with pytest.raises(LLMTimeout, match="total_timeout"):
        await collect(make_client(fake_sglang.base_url, total_timeout=0.5))


@pytest.mark.parametrize("mode", ["separate", "inline", "open_ended"])
async def test_max_tokens_inside_think_is_an_empty_answer(
    fake_sglang: FakeSGLang, make_client: MakeClient, mode: str
) -> None:
    fake_sglang.behave(reasoning=mode, reasoning_text="hmm " * 40)
    if mode == "open_ended":
        fake_sglang.behave(flavour="llamacpp")
    client = make_client(fake_sglang.base_url, max_tokens=16)
    deltas: list[Delta] = []
    with pytest.raises(LLMEmptyAnswer, match="TEAMBOT_LLM__MAX_TOKENS") as err:
        await collect(client, into=deltas)
    assert "".join(d.content for d in deltas) == ""
    assert err.value.finish_reason == "length" and "hmm" in err.value.reasoning
    assert err.value.usage is not None and err.value.usage.completion_tokens == 16
    with pytest.raises(LLMEmptyAnswer):
        await client.complete(QUESTION)
    assert not client.breaker_open


async def test_concurrency_is_bounded(fake_sglang: FakeSGLang, make_client: MakeClient) -> None:
    fake_sglang.behave(token_delay=0.01)
    client = make_client(fake_sglang.base_url, max_concurrency=2)
    results = await asyncio.gather(*(collect(client) for _ in range(5)))
    assert [r[0] for r in results] == [ANSWER] * 5
    assert fake_sglang.max_in_flight == 2


@pytest.mark.parametrize("mode", ["separate", "inline", "open_ended", "none"])
async def test_complete_splits_reasoning(
    fake_sglang: FakeSGLang, make_client: MakeClient, mode: str
) -> None:
    fake_sglang.behave(reasoning=mode)
    content, reasoning, usage = await make_client(fake_sglang.base_url).complete(QUESTION)
    assert content == ANSWER
    assert reasoning.strip() == ("" if mode == "none" else DEFAULT_REASONING)
    assert isinstance(usage, Usage) and usage.prompt_tokens > 0
    assert fake_sglang.requests[0]["stream"] is False


async def test_api_key_is_sent_and_a_wrong_one_is_explained(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(api_key="sekret")
    assert (await collect(make_client(fake_sglang.base_url, api_key="sekret")))[0] == ANSWER
    with pytest.raises(LLMUnavailable, match="TEAMBOT_LLM__API_KEY"):
        await collect(make_client(fake_sglang.base_url, api_key="wrong"))
    with pytest.raises(LLMUnavailable, match="TEAMBOT_LLM__API_KEY"):
        await collect(make_client(fake_sglang.base_url, model=""))


async def test_disabled_client_never_calls(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    with pytest.raises(LLMUnavailable, match="disabled"):
        await collect(make_client(fake_sglang.base_url, enabled=False))
    assert fake_sglang.hits == []


@pytest.mark.parametrize(
    ("mode", "separated", "parser"),
    [("separate", True, "deepseek-r1"), ("inline", False, None), ("none", None, None)],
)
async def test_probe_reports_the_server(
    fake_sglang: FakeSGLang,
    make_client: MakeClient,
    mode: str,
    separated: bool | None,
    parser: str | None,
) -> None:
    fake_sglang.behave(reasoning=mode)
    report = await make_client(fake_sglang.base_url, model="").probe()
    assert report.reachable and report.health_ok and report.error == ""
    assert report.models == (fake_sglang.behaviour.model,)
    assert report.model == fake_sglang.behaviour.model
    assert report.reasoning_parser == parser
    assert report.reasoning_separated is separated
    assert report.latency is not None and report.latency < 1.0


async def test_probe_unhealthy_and_unreachable(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(healthy=False)
    assert (await make_client(fake_sglang.base_url).probe()).health_ok is False
    url = closed_port_url()
    report = await make_client(url).probe()
    assert not report.reachable and url in report.error and report.models == ()


async def test_stopping_early_frees_the_slot(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(token_delay=0.01)
    client = make_client(fake_sglang.base_url, max_concurrency=1)
    async with aclosing(client.stream_chat(QUESTION)) as deltas:
        async for delta in deltas:
            if delta.content:
                break
    async with asyncio.timeout(2):
        assert (await collect(client))[0] == ANSWER


async def test_bad_request_is_not_retried_and_not_held_against_the_server(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    fake_sglang.behave(fail_status=400)
    client = make_client(fake_sglang.base_url, breaker_failures=1)
    with pytest.raises(LLMError, match="HTTP 400") as err:
        await collect(client)
    assert type(err.value) is LLMError
    assert len(fake_sglang.requests) == 1 and not client.breaker_open


async def test_fake_honours_separate_reasoning_false(fake_sglang: FakeSGLang) -> None:
    async with httpx.AsyncClient() as http:
        body = {"model": "m", "messages": QUESTION, "separate_reasoning": False}
        resp = await http.post(f"{fake_sglang.base_url}/chat/completions", json=body)
        message = resp.json()["choices"][0]["message"]
        assert message["reasoning_content"] is None
        assert message["content"] == f"{DEFAULT_REASONING}\n</think>\n\n{ANSWER}"
        fake_sglang.behave(api_key="k")
        assert (await http.get(f"{fake_sglang.url}/health")).status_code == 200
        assert (await http.get(f"{fake_sglang.base_url}/models")).status_code == 401


def test_splitter_handles_every_split_point() -> None:
    cases = [  # (hold, text, content, reasoning)
        (False, "<think>\nwhy\n</think>\n\nHi <b>x</b>", "Hi <b>x</b>", "\nwhy\n"),
        (True, "why\n</think>\n\nHi", "Hi", "why\n"),
        (True, "no thinking at all", "no thinking at all", ""),
        (False, "plain < text </th", "plain < text </th", ""),
        (False, "  <thin", "<thin", ""),
    ]
    for hold, text, want_content, want_reasoning in cases:
        for i in range(len(text) + 1):
            for j in range(i, len(text) + 1):
                splitter = ThinkSplitter(hold=hold)
                parts = [splitter.feed(p) for p in (text[:i], text[i:j], text[j:])]
                parts.append(splitter.finish())
                got = ("".join(c for c, _ in parts), "".join(r for _, r in parts))
                assert got == (want_content, want_reasoning), (text, i, j)


def test_errors_share_a_base() -> None:
    for cls in (LLMUnavailable, LLMTimeout, LLMStreamBroken, LLMEmptyAnswer):
        assert issubclass(cls, LLMError)


def _sse_server(*bodies: tuple[str, str]) -> httpx.AsyncClient:
    """An httpx client whose server answers chat requests with `bodies` in turn: (content type,
    raw body); /v1/models lists one model."""
    replies = list(bodies)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            return httpx.Response(
                200, json={"object": "list", "data": [{"id": "m", "object": "model"}]}
            )
        kind, body = replies.pop(0) if len(replies) > 1 else replies[0]
        return httpx.Response(200, headers={"content-type": kind}, content=body.encode())

    return httpx.AsyncClient(transport=httpx.MockTransport(handle))


def _chunk(**delta: str) -> str:
    choice = {"index": 0, "delta": delta, "finish_reason": None}
    return f"data: {json.dumps({'choices': [choice]})}\n\n"


async def test_an_error_event_before_any_text_is_unavailable_and_retried() -> None:
    error = 'data: {"error": {"message": "KV cache pool is full", "code": 503}}\n\n'
    async with _sse_server(("text/event-stream", error)) as http:
        client = LLMClient(LLMSettings(base_url="http://model/v1", max_retries=1), http_client=http)
        with pytest.raises(LLMUnavailable, match="KV cache pool is full"):
            await collect(client)


async def test_a_garbled_chunk_after_text_is_a_broken_stream_keeping_the_text() -> None:
    body = _chunk(content="Half an ") + "data: {not json\n\n"
    async with _sse_server(("text/event-stream", body)) as http:
        client = LLMClient(LLMSettings(base_url="http://model/v1"), http_client=http)
        seen: list[Delta] = []
        with pytest.raises(LLMStreamBroken, match="not JSON") as caught:
            await collect(client, into=seen)
        assert caught.value.after_output and "".join(d.content for d in seen) == "Half an "


async def test_an_html_page_instead_of_a_stream_is_unavailable() -> None:
    """A proxy's login page with status 200 is not an answer."""
    async with _sse_server(("text/html", "<html>Sign in</html>")) as http:
        client = LLMClient(LLMSettings(base_url="http://model/v1", max_retries=0), http_client=http)
        with pytest.raises(LLMUnavailable, match="text/event-stream"):
            await collect(client)


async def test_status_says_what_the_calls_so_far_showed(
    fake_sglang: FakeSGLang, make_client: MakeClient
) -> None:
    """/readyz shows this: no "ok" for a model server nobody has reached yet."""
    client = make_client(fake_sglang.base_url)
    assert client.status().startswith("not contacted yet")
    await collect(client)
    assert client.status() == "ok"
    down = make_client(closed_port_url(), max_retries=0, breaker_failures=2)
    with pytest.raises(LLMUnavailable):
        await collect(down)
    assert down.status().startswith("failing (1 in a row")
    with pytest.raises(LLMUnavailable):
        await collect(down)
    assert down.status().startswith("unavailable")
