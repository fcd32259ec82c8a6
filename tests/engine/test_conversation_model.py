"""What a real model server does to an answer, end to end against the extended fake: context
limits, how answers end, what goes back as history, prefix reuse, follow-ups and citations."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from engine.answer.prompt import INSTRUCTIONS
from engine.messages import Outcome
from knowledge import Embedder
from tests.fakes.sglang import FakeSGLang, prompt_tokens_of
from tests.helpers import Core, inbound, make_core

VPN = "How do I reset my VPN connection?"
MakeCore = Callable[..., Awaitable[Core]]


@pytest.fixture
async def build(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[MakeCore]:
    made: list[tuple[Core, Any]] = []

    async def make(**llm: object) -> Core:
        conversation = llm.pop("conversation", None)
        core, kb = await make_core(
            tmp_path / str(len(made)),
            embedder,
            sample_index,
            fake_sglang,
            llm=llm,
            conversation=conversation,  # type: ignore[arg-type]
        )
        made.append((core, kb))
        return core

    yield make
    for core, kb in made:
        await core.llm.close()
        await kb.close()
        await core.store.close()


def refused(fake: FakeSGLang) -> list[int]:
    """Prompt sizes of the chat requests the server had to refuse as over its context."""
    context = fake.behaviour.context
    sizes = [len(prompt_tokens_of(r["messages"])) for r in fake.requests]
    return [n for n in sizes if n >= context]


# -- 1. the context ----------------------------------------------------------------------------


@pytest.mark.parametrize("tokenize", [True, False])
async def test_overlong_chinese_question_gets_its_own_answer(
    build: MakeCore, fake_sglang: FakeSGLang, tokenize: bool
) -> None:
    """3,990 characters, under max_message_chars, but ~8,000 tokens for a 4,096 context."""
    fake_sglang.behave(flavour="llamacpp", context=4096, tokenize=tokenize)
    core = await build()
    question = ("VPN 连接怎么重置？" + "我的VPN连不上了，重置以后还是不行，" * 250)[:3990]
    answer, reply = await core.ask(question)
    assert answer is not None and answer.outcome is Outcome.TOO_LONG
    assert "问题太长" in answer.text and "仅检索" not in answer.text
    assert fake_sglang.requests == []  # never sent to be refused
    assert reply.final == answer
    assert not core.llm.breaker_open


async def test_long_threads_are_fitted_by_dropping_oldest_history_first(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(flavour="llamacpp", context=1800)
    core = await build(max_tokens=256, conversation={"history_tokens": 100_000})
    questions = [
        VPN,
        "How many days of annual leave do I get?",
        "How do I reset my password?",
        "How do I connect to the office printer?",
        "And the VPN again: what if the reset does not help?",
    ]
    for question in questions:
        answer, _ = await core.ask(question, thread="long")
        assert answer is not None and answer.outcome is Outcome.ANSWERED, answer
    assert refused(fake_sglang) == []
    last = fake_sglang.requests[-1]["messages"]
    assert len(last) < 2 * len(questions) - 1  # some history gave way
    assert questions[-1] in last[-1]["content"]
    assert questions[0] not in "".join(m["content"] for m in last[:-1])  # the oldest went first
    assert last[-3]["content"].count("Question: ") == 1  # the newest history turn stayed


async def test_a_server_that_counts_more_than_we_did_gets_a_smaller_prompt(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    """The server does not report its context; its refusal says it, and the prompt is refitted."""
    fake_sglang.behave(flavour="llamacpp", context=380, report_context=False)
    fake_sglang.behave(answer="Reset it in the client [1].")
    core = await build(max_tokens=48, conversation={"passage_chars": 300})
    answer, _ = await core.ask(VPN)
    assert answer is not None and answer.outcome is Outcome.ANSWERED
    sizes = [len(prompt_tokens_of(r["messages"])) for r in fake_sglang.requests]
    assert len(refused(fake_sglang)) == 1 and len(fake_sglang.requests) == 2, sizes
    assert core.llm.budget().context == 380


# -- 2. endings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("question", "notice"),
    [(VPN, "⚠️ This answer is incomplete"), ("VPN 连接怎么重置？", "⚠️ 回答不完整")],
)
async def test_an_answer_cut_by_max_tokens_says_so(
    build: MakeCore, fake_sglang: FakeSGLang, question: str, notice: str
) -> None:
    fake_sglang.behave(reasoning="none", answer="Open the client [1]. " + "again " * 100)
    core = await build(max_tokens=24)
    answer, _ = await core.ask(question)
    assert answer is not None and answer.outcome is Outcome.TRUNCATED
    assert answer.text.endswith(answer.notice) and answer.notice.startswith(notice)
    stored = await core.store.turn(answer.turn_id or 0)
    assert stored is not None and stored.outcome is Outcome.TRUNCATED
    assert notice not in stored.model_text  # the notice never goes back to the model
    assert not core.llm.breaker_open


async def test_an_error_chunk_mid_answer_has_its_own_ending(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(reasoning="none", answer="Open the VPN client [1] and press Reset now.")
    fake_sglang.behave(error_after_tokens=4, error_message="CUDA error: out of memory")
    core = await build()
    answer, _ = await core.ask("VPN 连接怎么重置？")
    assert answer is not None and answer.outcome is Outcome.INTERRUPTED
    assert answer.text.startswith("Open the VPN client")
    assert "模型服务在生成回答时报告了错误" in answer.notice
    assert "没有继续响应" not in answer.text  # not blamed on a server that stopped responding
    assert core.llm.status().startswith("failing (1 in a row")


async def test_a_full_context_pool_mid_answer_is_not_a_breaker_failure(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(reasoning="none", answer="Open the VPN client [1] and press Reset now.")
    fake_sglang.behave(error_after_tokens=4)  # "Context size has been exceeded."
    core = await build(breaker_failures=1)
    answer, _ = await core.ask(VPN)
    assert answer is not None and answer.outcome is Outcome.INTERRUPTED
    assert "ran out of room" in answer.notice
    assert not core.llm.breaker_open


async def test_teambots_own_time_limit_has_its_own_ending(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(reasoning="none", answer="Step one [1]. " + "more " * 200, token_delay=0.02)
    core = await build(total_timeout=1.0, breaker_failures=1)
    answer, _ = await core.ask(VPN)
    assert answer is not None and answer.outcome is Outcome.TIMED_OUT
    assert answer.text.startswith("Step one")
    assert "stopped after 1 seconds" in answer.notice
    assert "stopped responding" not in answer.text
    assert not core.llm.breaker_open and "failing" not in core.llm.status()


# -- 3 and 4. history and the prefix cache -----------------------------------------------------


async def test_only_what_the_model_said_goes_back_as_history(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    core = await build(max_retries=0)
    first, _ = await core.ask(VPN, thread="h")
    fake_sglang.behave(fail_status=500, fail_times=1)
    down, _ = await core.ask("How do I reset my password?", thread="h")
    nothing, _ = await core.ask("What is the best pizza topping for a volcano?", thread="h")
    assert first is not None and down is not None and nothing is not None
    assert down.outcome is Outcome.RETRIEVAL_ONLY and nothing.outcome is Outcome.NO_KNOWLEDGE
    await core.ask("How many days of annual leave do I get?", thread="h")
    messages = fake_sglang.requests[-1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[1] == {"role": "assistant", "content": first.text}
    sent = "".join(m["content"] for m in messages)
    assert "Retrieval-only" not in sent and "couldn't find" not in sent
    assert "How do I reset my password?" not in messages[0]["content"]


async def test_each_prompt_begins_with_the_previous_prompt_and_its_answer(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    core = await build()
    answers = []
    for question in [VPN, "And on a Mac?", "How many days of annual leave do I get?"]:
        answer, _ = await core.ask(question, thread="p")
        assert answer is not None and answer.outcome is Outcome.ANSWERED
        answers.append(answer)
    chats = [r["messages"] for r in fake_sglang.requests]
    for before, after, answer in zip(chats, chats[1:], answers, strict=False):
        assert after[: len(before)] == before
        assert after[len(before)] == {"role": "assistant", "content": answer.text}
    for previous, answer in itertools.pairwise(answers):
        # the server had the whole previous prompt and its answer cached
        assert answer.usage.cached_tokens is not None
        assert answer.usage.cached_tokens >= previous.usage.prompt_tokens


# -- 5. follow-ups -----------------------------------------------------------------------------


def passages_in(messages: list[dict[str, str]]) -> str:
    return messages[-1]["content"].split("Question:")[0]


async def test_a_follow_up_retrieves_with_the_conversation(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    core = await build()
    await core.ask(VPN, thread="f")
    answer, _ = await core.ask("And if that does not work?", thread="f")
    assert answer is not None and answer.outcome is Outcome.ANSWERED
    assert "VPN" in passages_in(fake_sglang.requests[-1]["messages"])
    assert answer.citations and answer.citations[0].location.endswith("vpn.md")


async def test_the_model_makes_the_follow_up_standalone_when_it_does_not_think(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(reasoning="none")
    core = await build()
    await core.ask(VPN, thread="m")
    await core.ask("And if that does not work?", thread="m")
    rewrite, chat = fake_sglang.requests[-2:]
    assert rewrite["stream"] is False and "Follow-up: And if that does not work?" in str(rewrite)
    assert "VPN" in passages_in(chat["messages"])
    # a thinking model is not asked (seconds of reasoning before every follow-up)
    fake_sglang.behave(reasoning="separate")
    thinking = await build()
    before = len(fake_sglang.requests)
    await thinking.ask(VPN, thread="t")
    await thinking.ask("And if that does not work?", thread="t")
    assert all(r.get("stream") for r in fake_sglang.requests[before:])


# -- 6. citations ------------------------------------------------------------------------------


async def test_an_answer_that_cites_nothing_lists_nothing(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    fake_sglang.behave(answer="The passages do not say how to do that.")
    core = await build()
    answer, _ = await core.ask(VPN)
    assert answer is not None and answer.outcome is Outcome.ANSWERED
    assert answer.citations == ()


def test_the_instructions_hold_no_number_that_could_be_echoed_as_a_citation() -> None:
    assert not re.search(r"\[\d+\]", INSTRUCTIONS)


async def test_what_a_colleague_said_goes_back_as_history(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    core = await build()
    first, _ = await core.ask(VPN, thread="hand")
    await core.ask("转人工", thread="hand")
    key = inbound("", "hand").thread_key
    assert await core.conversation.human_replied(key, "agent-7", "Reinstall the client from IT.")
    thread = await core.store.thread(key)
    await core.conversation.resolve(thread.id, by="agent-7")
    # a question the handbook covers, so the model is asked (fusion gating, #18)
    await core.ask("After the reinstall, how do I connect to the VPN?", thread="hand")
    messages = fake_sglang.requests[-1]["messages"]
    assert first is not None
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == first.text
    assert messages[2]["content"] == "转人工"
    assert messages[3]["content"] == "(a colleague replied) Reinstall the client from IT."
    assert "转接人工" not in "".join(m["content"] for m in messages)  # the canned reply stays out


async def test_an_off_topic_rewrite_does_not_take_the_grounding_away(
    build: MakeCore, fake_sglang: FakeSGLang
) -> None:
    """Seen with a 135M model on llama.cpp: the rewrite of a follow-up (or of a new question)
    came back as an unrelated sentence, and searched alone it found nothing — the asker got
    "no knowledge". The rewrite is searched beside the question itself (and, for a follow-up,
    the previous question with it), so a bad rewrite cannot lose what they find."""
    fake_sglang.behave(reasoning="none")
    core = await build()
    await core.ask(VPN, thread="off")
    fake_sglang.behave(
        reasoning="none", answer="The previous answer is a response to the previous question."
    )
    answer, _ = await core.ask("How many days of annual leave do I get?", thread="off")
    assert answer is not None and answer.outcome is Outcome.ANSWERED, answer
    assert (
        any("leave" in c.location for c in answer.citations)
        or "leave" in passages_in(fake_sglang.requests[-1]["messages"]).lower()
    )
