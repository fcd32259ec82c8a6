"""Reading a streamed answer off the wire: the SSE events of an OpenAI-style
`chat.completion.chunk` stream as JSON chunks, what one chunk carries (text, the model's
thinking, usage), and the Deltas of one answer with its timeouts and failures as LLM errors.

The stream is read with httpx and httpx-sse rather than openai's stream: building openai's
pydantic models for every chunk cost more CPU than the rest of the answer together."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

import engine.llm.errors as errors
from engine.config import LLMSettings
from engine.llm.errors import (
    CONTEXT_ERROR,
    LLMEmptyAnswer,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
)
from engine.llm.think import ThinkSplitter
from engine.messages import Usage

Chunk = Mapping[str, Any]  # one decoded `chat.completion.chunk` of the stream


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer. The last one carries usage and finish_reason."""

    content: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


class ServerError(Exception):
    """The server sent an error event, a chunk that is not JSON, or a wrong content type."""


class ErrorEvent(ServerError):
    """An `{"error": …}` chunk: the server's own report of a failure."""

    def __init__(self, detail: str):
        super().__init__(f"error event: {detail}")
        self.detail = detail


async def chunks(response: httpx.Response) -> AsyncGenerator[Chunk, None]:
    """The decoded chunks of an OpenAI-style SSE stream, up to `data: [DONE]`."""
    try:
        async for event in EventSource(response).aiter_sse():
            if event.data == "[DONE]":
                return
            if not event.data:
                continue
            try:
                chunk = json.loads(event.data)
            except ValueError:
                raise ServerError(f"a stream chunk is not JSON: {event.data[:200]!r}") from None
            if not isinstance(chunk, dict):
                raise ServerError(f"a stream chunk is not an object: {event.data[:200]!r}")
            if error := chunk.get("error"):
                message = error.get("message") if isinstance(error, dict) else None
                raise ErrorEvent(str(message or json.dumps(error))[:500])
            yield chunk
    except SSEError as exc:
        raise ServerError(str(exc)) from None


def choices(chunk: Chunk) -> list[Mapping[str, Any]]:
    found = chunk.get("choices")
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def reasoning_in(delta: Mapping[str, Any]) -> str | None:
    """SGLang's `reasoning_content` (vLLM and others: `reasoning`) of a delta."""
    value = delta.get("reasoning_content") or delta.get("reasoning")
    return value if isinstance(value, str) else None


def begins(chunk: Chunk) -> bool:
    """Whether the answer has begun with `chunk`: it carries text (or thinking) or finishes."""
    for choice in choices(chunk):
        delta = choice.get("delta") or {}
        if delta.get("content") or reasoning_in(delta) or choice.get("finish_reason"):
            return True
    return False


def usage_of(raw: object) -> Usage | None:
    """Usage from a chunk's `usage` object (SGLang: cached_tokens under prompt_tokens_details)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), cached)


@dataclass
class Opened:
    """A streamed answer whose first text (or finish) has arrived."""

    response: httpx.Response
    chunks: AsyncGenerator[Chunk, None]
    first: list[Chunk]
    model: str

    async def close(self) -> None:
        await self.chunks.aclose()
        await self.response.aclose()


class Reader:
    """Reads one server's streamed answers: the request up to its first text, then the Deltas
    with the thinking split off; each timeout or failure as the LLMError it means."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        headers: Mapping[str, str],
        settings: LLMSettings,
        base_url: str,
    ) -> None:
        self._http, self._headers, self._settings = http, headers, settings
        self.base_url = base_url

    async def open(
        self, body: dict[str, Any], model: Callable[[], Awaitable[str]], total_deadline: float
    ) -> Opened:
        """Send the request and read up to the first chunk that carries text (or finishes)."""
        which, deadline = self._deadline("first_token_timeout", total_deadline)
        try:
            async with asyncio.timeout_at(deadline):
                name = await model()
                sent = {
                    "model": name,
                    **body,
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                request = self._http.build_request(
                    "POST", f"{self.base_url}/chat/completions", json=sent, headers=self._headers
                )
                response = await self._http.send(request, stream=True)
                if response.status_code >= 400:
                    await response.aread()
                    await response.aclose()
                    raise errors.status_error(self.base_url, response.status_code, response.text)
                opened = Opened(response, chunks(response), [], name)
                try:
                    while True:
                        opened.first.append(chunk := await anext(opened.chunks))
                        if begins(chunk):
                            return opened
                except StopAsyncIteration:
                    pass
                except BaseException:
                    await opened.close()
                    raise
                await opened.close()
                raise LLMUnavailable(
                    f"the model server at {self.base_url} ended the stream before the first "
                    f"token. {errors.fix(self.base_url)}",
                    retryable=True,
                )
        except TimeoutError:
            raise self._timeout(which, after_output=False) from None
        except errors.transport_errors() as exc:
            raise errors.api_error(self.base_url, exc) from exc
        except ServerError as exc:
            if isinstance(exc, ErrorEvent) and CONTEXT_ERROR.search(exc.detail):
                raise errors.status_error(self.base_url, 400, exc.detail) from exc
            raise LLMUnavailable(
                f"the model server at {self.base_url} failed the request: {exc}. "
                f"{errors.fix(self.base_url)}",
                retryable=True,
            ) from exc

    async def deltas(
        self,
        opened: Opened,
        splitter: ThinkSplitter | None,
        total_deadline: float,
        orphan_close: Callable[[str], None],
    ) -> AsyncGenerator[Delta, None]:
        """The answer's Deltas, the last with usage and finish_reason; LLMEmptyAnswer after it
        when there was no answer text. `orphan_close(model)`: the model closed an unopened
        </think>. No `splitter`: the server separates the thinking (its reasoning parser)."""
        usage: Usage | None = None
        finish: str | None = None
        answer, reasoning_all, pending = "", "", list(opened.first)
        try:
            while True:
                started = bool(answer or reasoning_all)
                if pending:
                    chunk: Chunk | None = pending.pop(0)
                else:
                    chunk = await self._next_chunk(opened, total_deadline, started=started)
                if chunk is None:
                    break
                usage = usage_of(chunk.get("usage")) or usage
                content, reasoning, finish = _read_chunk(chunk, splitter, finish)
                if not answer:
                    content = content.lstrip()  # as the splitter does: no leading whitespace
                if content or reasoning:
                    answer, reasoning_all = answer + content, reasoning_all + reasoning
                    yield Delta(content, reasoning)
        finally:
            await opened.close()
        if finish is None:
            raise LLMStreamBroken(
                f"the stream from {self.base_url} ended without a finish reason.",
                after_output=bool(answer or reasoning_all),
            )
        content = reasoning = ""
        if splitter is not None:
            content, reasoning = splitter.finish(truncated=finish == "length")
            if splitter.orphan_close:
                orphan_close(opened.model)
        if not (answer + content).strip():
            yield Delta(reasoning=reasoning, usage=usage, finish_reason=finish)
            raise LLMEmptyAnswer(
                errors.empty_message(self.base_url, finish, self._settings.max_tokens),
                reasoning=reasoning_all + reasoning,
                usage=usage,
                finish_reason=finish,
            )
        yield Delta(content, reasoning, usage, finish)

    async def _next_chunk(
        self, opened: Opened, total_deadline: float, *, started: bool
    ) -> Chunk | None:
        """The stream's next chunk within the idle (or total) limit; None at its end. Every way
        the wire fails becomes the LLMError the core maps to an ending."""
        which, deadline = self._deadline("idle_timeout", total_deadline)
        try:
            async with asyncio.timeout_at(deadline):
                return await anext(opened.chunks)
        except StopAsyncIteration:
            return None
        except TimeoutError:
            raise self._timeout(which, after_output=started) from None
        except ErrorEvent as exc:
            raise LLMServerError(
                f"the model server at {self.base_url} reported an error mid-answer: {exc.detail}",
                detail=exc.detail,
                after_output=started,
            ) from exc
        except (httpx.HTTPError, ServerError) as exc:
            raise LLMStreamBroken(
                f"the model server at {self.base_url} cut the answer off ({exc!r}).",
                after_output=started,
            ) from exc

    def _deadline(self, which: str, total_deadline: float) -> tuple[str, float]:
        """The next wait's limit: `which` from now, or the answer's total limit if sooner."""
        deadline = loop_time() + float(getattr(self._settings, which))
        return (
            (which, deadline) if deadline <= total_deadline else ("total_timeout", total_deadline)
        )

    def _timeout(self, which: str, *, after_output: bool) -> LLMTimeout:
        seconds = getattr(self._settings, which)
        message = errors.timeout_message(self.base_url, which, seconds)
        return LLMTimeout(message, which=which, after_output=after_output)


def loop_time() -> float:
    """The event loop's clock, which `asyncio.timeout_at` deadlines are read against."""
    return asyncio.get_running_loop().time()


def _read_chunk(
    chunk: Chunk, splitter: ThinkSplitter | None, finish: str | None
) -> tuple[str, str, str | None]:
    """One chunk's answer text and thinking (the splitter takes `<think>` out of the content
    where the server does not separate it) and the finish reason so far."""
    content = reasoning = ""
    for choice in choices(chunk)[:1]:
        delta = choice.get("delta") or {}
        content = delta.get("content") or ""
        if separate := reasoning_in(delta):
            reasoning = separate
            if splitter is not None:
                splitter.separate()
        if splitter is not None:
            content, more = splitter.feed(content)
            reasoning += more
        finish = choice.get("finish_reason") or finish
    return content, reasoning, finish
