"""Collecting the model's streamed answer: the text, thinking, usage and timings as they come,
each changed text passed on to the reply channel, and how the stream ended.

The engine does not throttle: every changed text goes to `reply.update`, and the adapter's reply
channel coalesces edits by its platform's own interval. Each way a stream can end has its own
outcome, notice and metric (docs/model-server.md lists them)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from engine import metrics
from engine.catalog import phrase
from engine.llm import (
    Delta,
    LLMContextExceeded,
    LLMError,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
)
from engine.messages import Outcome, Usage
from engine.ports import ReplyChannel
from engine.text import clip

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Streamed:
    """What the model streamed. `outcome` None: no answer text came (the server failed or the
    model only thought), so the answer is the passages alone."""

    text: str  # the answer text, stripped
    reasoning: str
    usage: Usage
    first_token: float | None  # seconds from the start of the turn
    first_visible: float | None  # ...to the first text handed to the reply channel
    outcome: Outcome | None = None
    notice: str = ""  # said after the text (cut off, truncated, timed out …)


class _Collector:
    """The answer so far, and what the reply channel was last given."""

    def __init__(self, reply: ReplyChannel, started: float) -> None:
        self.reply, self.started = reply, started
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.usage = Usage()
        self.finish: str | None = None
        self.first_token: float | None = None
        self.first_visible: float | None = None
        self.shown = ""

    @property
    def text(self) -> str:
        return "".join(self.content).strip()

    async def add(self, delta: Delta) -> None:
        if self.first_token is None and (delta.content or delta.reasoning):
            self.first_token = time.monotonic() - self.started
        self.reasoning.append(delta.reasoning)
        self.content.append(delta.content)
        if delta.usage is not None:
            self.usage = delta.usage
        self.finish = delta.finish_reason or self.finish
        if delta.content and self.reply.limits.can_edit:
            await self._show()

    async def _show(self) -> None:
        text = clip(self.text, self.reply.limits.max_chars)
        if text and text != self.shown:  # past the channel's limit the clipped text stays put
            await self.reply.update(text)
            self.shown = text
            if self.first_visible is None:
                self.first_visible = time.monotonic() - self.started

    def ended(self, outcome: Outcome | None, ending: str = "", notice: str = "") -> Streamed:
        if outcome is not None:
            metrics.MODEL_ENDINGS.labels(ending).inc()
        return Streamed(
            self.text,
            "".join(self.reasoning).strip(),
            self.usage,
            self.first_token,
            self.first_visible,
            outcome,
            notice,
        )


async def collect(
    deltas: AsyncIterator[Delta],
    reply: ReplyChannel,
    *,
    language: str,
    started: float,
    total_timeout: float,
) -> Streamed:
    """Read the model's answer to its end, showing it through `reply` as it grows. Raises only
    LLMContextExceeded (the caller fits the prompt again); every other LLMError is an ending.
    `total_timeout`: the [llm] limit, named in the notice when it cut the answer."""
    got = _Collector(reply, started)
    try:
        async for delta in deltas:
            await got.add(delta)
    except LLMContextExceeded:
        raise
    except (LLMTimeout, LLMStreamBroken, LLMServerError) as error:
        metrics.MODEL_ERRORS.labels(type(error).__name__).inc()
        return _broken(got, error, language, total_timeout)
    except LLMError as error:  # unavailable, refused, or only thinking (LLMEmptyAnswer)
        metrics.MODEL_ERRORS.labels(type(error).__name__).inc()
        log.warning("model unavailable, answering from retrieval only: %s", error)
        return got.ended(None)
    if got.finish == "length":
        log.warning(
            "answer hit the length limit (%d completion tokens, %d prompt tokens)",
            got.usage.completion_tokens, got.usage.prompt_tokens,
        )  # fmt: skip
        return got.ended(Outcome.TRUNCATED, "length", phrase("truncated", language))
    return got.ended(Outcome.ANSWERED, "stop")


def _broken(got: _Collector, error: LLMError, language: str, total_timeout: float) -> Streamed:
    """The stream stopped early: the text so far with a notice of why, if there is any text."""
    if not got.text:
        log.warning("model failed before any answer text: %s", error)
        return got.ended(None)
    log.warning("model stream ended early: %s", error)
    if isinstance(error, LLMServerError):
        key = "server_full" if error.context else "server_error"
        return got.ended(Outcome.INTERRUPTED, key, phrase(key, language))
    if isinstance(error, LLMTimeout) and error.own_limit:
        notice = phrase("timed_out", language, seconds=total_timeout)
        return got.ended(Outcome.TIMED_OUT, "own_timeout", notice)
    return got.ended(Outcome.FAILED, "stalled", phrase("cut_off", language))
