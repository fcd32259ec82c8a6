"""Decoding an OpenAI-style `chat.completion.chunk` stream: the SSE events as JSON chunks, and
what one chunk carries (text, the model's thinking, usage).

The stream is read with httpx and httpx-sse rather than openai's stream: building openai's
pydantic models for every chunk cost more CPU than the rest of the answer together."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx
from httpx_sse import EventSource, SSEError

from engine.messages import Usage

Chunk = Mapping[str, Any]  # one decoded `chat.completion.chunk` of the stream


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


def has_text(chunk: Chunk) -> bool:
    return any(
        (c.get("delta") or {}).get("content") or reasoning_in(c.get("delta") or {})
        for c in choices(chunk)
    )


def finishes(chunk: Chunk) -> bool:
    return any(c.get("finish_reason") for c in choices(chunk))


def usage_of(raw: object) -> Usage | None:
    """Usage from a chunk's `usage` object (SGLang: cached_tokens under prompt_tokens_details)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), cached)
