"""engine.answer.stream: what reaches the reply channel while the model streams, and how a stream ends.

The deltas come from a list here; tests/engine/test_conversation_model.py streams the same
endings from the fake SGLang over HTTP."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence

import pytest

from engine.answer.stream import Streamed, collect
from engine.catalog import phrase
from engine.llm import (
    Delta,
    LLMContextExceeded,
    LLMEmptyAnswer,
    LLMError,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
)
from engine.messages import Answer, EscalationNotice, Outcome, Usage
from engine.ports import ChannelLimits


class Recorder:
    """A reply channel that keeps every update, at the limits given."""

    def __init__(self, max_chars: int = 4000, can_edit: bool = True) -> None:
        self._limits = ChannelLimits(max_chars=max_chars, can_edit=can_edit)
        self.updates: list[str] = []

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    async def open(self, language: str = "en") -> None: ...

    async def update(self, text: str) -> None:
        self.updates.append(text)

    async def finish(self, answer: Answer) -> None: ...

    async def post_escalation(self, notice: EscalationNotice) -> None: ...


async def deltas(pieces: Sequence[Delta], error: LLMError | None = None) -> AsyncIterator[Delta]:
    for piece in pieces:
        yield piece
    if error is not None:
        raise error


async def run(
    pieces: Sequence[Delta], error: LLMError | None = None, reply: Recorder | None = None
) -> tuple[Streamed, Recorder]:
    reply = reply or Recorder()
    started = time.monotonic()
    streamed = await collect(
        deltas(pieces, error), reply, language="en", started=started, total_timeout=300
    )
    return streamed, reply


USAGE = Usage(prompt_tokens=50, completion_tokens=7)
ANSWER = [
    Delta(reasoning="Let me think."),
    Delta(content="To reset"),
    Delta(content=" "),  # the stripped text does not change: nothing to send
    Delta(content="the VPN,"),
    Delta(reasoning=" More thought."),  # no new text either
    Delta(content=" quit it [1].", usage=USAGE, finish_reason="stop"),
]


async def test_every_changed_text_is_forwarded_without_a_throttle() -> None:
    streamed, reply = await run(ANSWER)
    assert reply.updates == ["To reset", "To reset the VPN,", "To reset the VPN, quit it [1]."]
    assert streamed.outcome is Outcome.ANSWERED and streamed.notice == ""
    assert streamed.text == "To reset the VPN, quit it [1]."
    assert streamed.reasoning == "Let me think. More thought."
    assert streamed.usage == USAGE
    assert streamed.first_token is not None and streamed.first_visible is not None
    assert 0 <= streamed.first_token <= streamed.first_visible  # the thinking came first


async def test_updates_are_clipped_to_the_channel_and_none_go_where_it_cannot_edit() -> None:
    _, reply = await run(ANSWER, reply=Recorder(max_chars=12))
    assert reply.updates == ["To reset", "To reset th…"]  # the same clipped text goes once
    streamed, reply = await run(ANSWER, reply=Recorder(can_edit=False))
    assert reply.updates == [] and streamed.first_visible is None
    assert streamed.text == "To reset the VPN, quit it [1]."  # the final message has it all


async def test_the_length_limit_is_truncated_with_a_notice() -> None:
    streamed, _ = await run([Delta(content="Half an answer", finish_reason="length")])
    assert streamed.outcome is Outcome.TRUNCATED
    assert streamed.notice == phrase("truncated", "en")


@pytest.mark.parametrize(
    ("error", "outcome", "notice"),
    [
        (LLMStreamBroken("cut", after_output=True), Outcome.FAILED, phrase("cut_off", "en")),
        (
            LLMTimeout("idle", which="idle_timeout", after_output=True),
            Outcome.FAILED,
            phrase("cut_off", "en"),
        ),
        (
            LLMTimeout("total", which="total_timeout", after_output=True),
            Outcome.TIMED_OUT,
            phrase("timed_out", "en", seconds=300),
        ),
        (
            LLMServerError("x", detail="boom", after_output=True),
            Outcome.INTERRUPTED,
            phrase("server_error", "en"),
        ),
        (
            LLMServerError("x", detail="context length exceeded", after_output=True),
            Outcome.INTERRUPTED,
            phrase("server_full", "en"),
        ),
    ],
)
async def test_a_stream_cut_after_text_keeps_the_text_and_says_why(
    error: LLMError, outcome: Outcome, notice: str
) -> None:
    streamed, reply = await run([Delta(content="The first half")], error)
    assert (streamed.outcome, streamed.notice) == (outcome, notice)
    assert streamed.text == "The first half" and reply.updates == ["The first half"]


@pytest.mark.parametrize(
    "error",
    [
        LLMUnavailable("down"),
        LLMTimeout("slow", which="first_token_timeout"),
        LLMEmptyAnswer("only thought", reasoning="hmm", usage=USAGE, finish_reason="length"),
        LLMStreamBroken("cut", after_output=True),
    ],
)
async def test_no_answer_text_means_the_passages_alone(error: LLMError) -> None:
    streamed, reply = await run([Delta(reasoning="thinking…")], error)
    assert streamed.outcome is None and streamed.text == "" and reply.updates == []


async def test_a_prompt_over_the_context_is_left_to_the_caller() -> None:
    with pytest.raises(LLMContextExceeded):
        await run([], LLMContextExceeded("too long", n_ctx=4096))
