"""The conversation core end to end: real store (SQLite), real retrieval on the sample handbook,
the real SGLang client against the fake SGLang over HTTP, and the web adapter's reply channel."""

from __future__ import annotations

import asyncio
import itertools
import time
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.web.adapter import WebReplyChannel
from engine.config import PolicySettings
from engine.messages import Attachment, ChatType, Click, Inbound, Outcome, Sender
from engine.store.tables import ThreadState
from knowledge import Embedder
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, closed_port, inbound, make_core

VPN_QUESTION = "How do I reset my VPN connection?"


async def test_answer_streams_with_citations_and_without_reasoning(core: Core) -> None:
    core.fake.behave(reasoning_text="SECRET-THOUGHT about the passages", token_delay=0.02)
    answer, reply = await core.ask(VPN_QUESTION)
    assert answer is not None
    assert answer.outcome is Outcome.ANSWERED
    assert "[1]" in answer.text
    assert answer.citations and answer.citations[0].location.endswith("vpn.md")
    assert len(reply.updates) >= 2, "the answer should grow visibly while it streams"
    assert all(answer.text.startswith(update.rstrip("…")) for update in reply.updates)
    shown = [answer.text, *reply.updates]
    assert not any("SECRET-THOUGHT" in text for text in shown)
    assert "SECRET-THOUGHT" in answer.reasoning
    stored = await core.store.turn(answer.turn_id or 0)
    assert stored is not None and "SECRET-THOUGHT" in stored.reasoning
    assert stored.outcome is Outcome.ANSWERED


@pytest.mark.parametrize("mode", ["inline", "open_ended"])
async def test_inline_thinking_never_reaches_the_reply(core: Core, mode: str) -> None:
    # open_ended: the server's chat template (llama.cpp /props) says that it opens <think>
    flavour = "llamacpp" if mode == "open_ended" else "sglang"
    core.fake.behave(reasoning=mode, reasoning_text="SECRET-THOUGHT inline", flavour=flavour)
    answer, reply = await core.ask(VPN_QUESTION)
    assert answer is not None and answer.outcome is Outcome.ANSWERED
    assert "think>" not in answer.text
    assert not any("SECRET-THOUGHT" in text for text in [answer.text, *reply.updates])
    assert "SECRET-THOUGHT" in answer.reasoning


async def test_redelivered_message_is_answered_once(core: Core) -> None:
    first, _ = await core.ask(VPN_QUESTION, message_id="m-1")
    again, reply = await core.ask(VPN_QUESTION, message_id="m-1")
    assert first is not None and again is None
    assert reply.final is None and reply.updates == []
    assert len(core.fake.requests) == 1


async def test_concurrent_redeliveries_are_answered_once(core: Core) -> None:
    results = await asyncio.gather(*(core.ask(VPN_QUESTION, message_id="m-2") for _ in range(5)))
    answers = [answer for answer, _ in results if answer is not None]
    assert len(answers) == 1
    assert sum(1 for _, reply in results if reply.final is not None) == 1
    assert len(core.fake.requests) == 1


async def test_unreachable_model_gives_retrieval_only_answer_fast(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    built, kb = await make_core(
        tmp_path, embedder, sample_index, fake_sglang,
        llm={"base_url": f"http://127.0.0.1:{closed_port()}/v1"},
    )  # fmt: skip
    try:
        started = time.monotonic()
        answer, reply = await built.ask(VPN_QUESTION)
        elapsed = time.monotonic() - started
        assert answer is not None
        assert elapsed < 2.0, f"retrieval-only answer took {elapsed:.2f} s"
        assert answer.outcome is Outcome.RETRIEVAL_ONLY
        assert answer.text.startswith("⚠️ Retrieval-only answer")
        assert answer.citations[0].location.endswith("vpn.md")
        assert reply.final == answer
        # once the breaker is open, later questions skip the model entirely
        for _ in range(3):
            await built.ask(VPN_QUESTION)
        started = time.monotonic()
        answer, _ = await built.ask(VPN_QUESTION)
        assert answer is not None and answer.outcome is Outcome.RETRIEVAL_ONLY
        assert built.llm.breaker_open
    finally:
        await built.llm.close()
        await kb.close()
        await built.store.close()


async def test_server_error_falls_back_to_retrieval_only(core: Core) -> None:
    core.fake.behave(fail_status=500)
    answer, _ = await core.ask(VPN_QUESTION)
    assert answer is not None and answer.outcome is Outcome.RETRIEVAL_ONLY
    assert answer.citations[0].location.endswith("vpn.md")


async def test_hang_before_first_token_falls_back(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    built, kb = await make_core(
        tmp_path, embedder, sample_index, fake_sglang, llm={"first_token_timeout": 0.5}
    )
    try:
        fake_sglang.behave(hang_before_first=True)
        answer, _ = await built.ask(VPN_QUESTION)
        assert answer is not None and answer.outcome is Outcome.RETRIEVAL_ONLY
    finally:
        await built.llm.close()
        await kb.close()
        await built.store.close()


async def test_hang_mid_stream_keeps_what_was_streamed_plus_a_notice(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    built, kb = await make_core(
        tmp_path, embedder, sample_index, fake_sglang, llm={"idle_timeout": 0.5}
    )
    try:
        fake_sglang.behave(answer="Open the VPN client and press Reset [1]. Then sign in again.")
        fake_sglang.behave(hang_after_tokens=4)
        answer, reply = await built.ask(VPN_QUESTION)
        assert answer is not None and answer.outcome is Outcome.FAILED
        assert answer.text.startswith("Open the VPN client")
        assert "Then sign in again" not in answer.text
        assert "⚠️ The answer was cut off" in answer.text
        assert reply.final == answer
        stored = await built.store.turn(answer.turn_id or 0)
        assert stored is not None and stored.outcome is Outcome.FAILED
    finally:
        await built.llm.close()
        await kb.close()
        await built.store.close()


async def test_connection_cut_mid_stream_keeps_partial(core: Core) -> None:
    core.fake.behave(answer="First step [1]. Second step. Third step.", cut_after_tokens=3)
    answer, _ = await core.ask(VPN_QUESTION)
    assert answer is not None and answer.outcome is Outcome.FAILED
    assert answer.text.startswith("First step")
    assert "cut off" in answer.text


async def test_thread_keeps_its_history_across_turns(core: Core) -> None:
    first, _ = await core.ask(VPN_QUESTION, thread="h")
    second, _ = await core.ask("And how do I reset my password?", thread="h")
    assert first is not None and second is not None
    last = core.fake.requests[-1]["messages"]
    assert VPN_QUESTION in last[0]["content"]
    assert last[1] == {"role": "assistant", "content": first.text}
    assert "And how do I reset my password?" in last[-1]["content"]
    # the second prompt starts with the whole first conversation: the prefix cache hits it
    assert second.usage.cached_tokens is not None and second.usage.cached_tokens > 0
    # another thread does not see it
    await core.ask("How many days of annual leave do I get?", thread="other")
    other = core.fake.requests[-1]["messages"]
    assert len(other) == 1 and VPN_QUESTION not in other[0]["content"]


async def test_nothing_relevant_says_so_without_asking_the_model(core: Core) -> None:
    answer, reply = await core.ask("What is the best pizza topping for a volcano picnic?")
    assert answer is not None and answer.outcome is Outcome.NO_KNOWLEDGE
    assert "couldn't find" in answer.text and answer.citations == ()
    assert core.fake.requests == []
    assert reply.final == answer


async def test_chinese_question_gets_chinese_phrases(core: Core) -> None:
    answer, _ = await core.ask("火山野餐最适合什么披萨配料？")
    assert answer is not None and answer.language == "zh"
    if answer.outcome is Outcome.NO_KNOWLEDGE:
        assert "知识库里没有找到" in answer.text
    else:
        assert "Chinese" in core.fake.requests[-1]["messages"][-1]["content"]


@pytest.mark.parametrize(
    ("text", "attachments", "expected"),
    [
        ("   ", (), "Please write your question"),
        ("x" * 5000, (), "too long (5000 characters; the limit is 4000)"),
        ("", (Attachment("image", "screen.png"),), "nothing to answer yet"),
    ],
)
async def test_unusable_messages_get_a_clear_reply_and_are_recorded(
    core: Core, text: str, attachments: tuple[Attachment, ...], expected: str
) -> None:
    answer, reply = await core.ask(text, attachments=attachments)
    assert answer is not None and answer.outcome is Outcome.FAILED
    assert expected in answer.text
    assert reply.final == answer
    assert core.fake.requests == []
    assert await core.store.turn(answer.turn_id or 0) is not None


class _Unpaced(WebReplyChannel):
    """The web chat's channel without its own pacing: what the engine forwards, as it does."""

    async def update(self, text: str) -> None:
        self.updates.append(text)


async def test_each_new_text_is_forwarded_and_the_final_answer_is_whole(core: Core) -> None:
    """No throttle in the engine (the adapter's reply channel coalesces edits): every word that
    arrives goes to the channel once, the text only ever grows, and the final answer is whole."""
    words = " ".join(f"w{i}" for i in range(40))
    core.fake.behave(answer=f"{words} [1].", token_delay=0.005)
    answer, reply = await core.ask(VPN_QUESTION, reply=_Unpaced())
    assert answer is not None and answer.text == f"{words} [1]."
    assert len(reply.updates) == 41  # one per streamed word
    assert all(later.startswith(earlier) for earlier, later in itertools.pairwise(reply.updates))
    assert len(set(reply.updates)) == len(reply.updates)
    assert reply.updates[-1] == answer.text and reply.final == answer
    first_token, first_visible = answer.timings.first_token, answer.timings.first_visible
    assert first_token is not None and first_visible is not None
    assert first_token <= first_visible


async def test_thread_taken_by_a_human_stays_quiet(core: Core) -> None:
    first, _ = await core.ask(VPN_QUESTION, thread="taken")
    assert first is not None
    thread = await core.store.thread(inbound("", "taken").thread_key)
    await core.store.set_state(thread.id, ThreadState.HUMAN, taken_by="agent-7")
    answer, reply = await core.ask("Still broken", thread="taken")
    assert answer is not None and answer.outcome is Outcome.HANDED_OFF
    assert reply.final is None and reply.updates == []
    assert len(core.fake.requests) == 1


@pytest.mark.parametrize("text", ["转人工", "human please", "Talk to a person", "人工客服！"])
async def test_asking_for_a_person_escalates_and_the_bot_goes_quiet(core: Core, text: str) -> None:
    first, _ = await core.ask(VPN_QUESTION, thread="esc")
    assert first is not None
    answer, reply = await core.ask(text, thread="esc")
    assert answer is not None and answer.outcome is Outcome.HANDED_OFF
    assert ("colleague" in answer.text) or ("转接人工" in answer.text)
    assert len(reply.escalations) == 1
    notice = reply.escalations[0]
    assert notice.question == VPN_QUESTION and notice.trigger == "asked_for_human"
    assert notice.citations and notice.citations[0].location.endswith("vpn.md")
    thread = await core.store.thread(inbound("", "esc").thread_key)
    assert thread.state is ThreadState.ESCALATED
    later, later_reply = await core.ask("hello?", thread="esc")
    assert later is not None and later.outcome is Outcome.HANDED_OFF
    assert later_reply.final is None
    assert len(core.fake.requests) == 1


async def test_questions_mentioning_humans_are_still_answered(core: Core) -> None:
    answer, reply = await core.ask("How do I add a human user to the VPN?")
    assert answer is not None and answer.outcome is not Outcome.HANDED_OFF
    assert reply.escalations == []


async def test_button_escalation_then_agent_takes_over(core: Core) -> None:
    await core.ask(VPN_QUESTION, thread="btn")
    key = inbound("", "btn").thread_key
    reply = WebReplyChannel()
    await core.conversation.clicked(Click("human", "u1", thread=key), reply)
    assert reply.escalations[0].trigger == "button"
    assert reply.final is not None and reply.final.outcome is Outcome.HANDED_OFF
    assert await core.conversation.human_replied(key, "agent-9")
    thread = await core.store.thread(key)
    assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "agent-9")
    # a second click does not notify twice; an agent in an open thread takes nothing
    again = WebReplyChannel()
    await core.conversation.clicked(Click("human", "u1", thread=key), again)
    assert again.escalations == []
    other = inbound("", "open-thread").thread_key
    assert not await core.conversation.human_replied(other, "agent-9")


async def test_unmentioned_group_message_is_answered_only_in_a_thread_the_bot_answered(
    core: Core,
) -> None:
    def group(text: str, thread: str, *, mentioned: bool, message_id: str = "") -> Inbound:
        return replace(
            inbound(text, thread, message_id or None),
            platform="feishu",
            chat_id="oc_group",
            chat_type=ChatType.GROUP,
            mentioned=mentioned,
        )

    # someone else's thread, unknown to the store: not for the bot
    chatter = await core.conversation.handle(
        group(VPN_QUESTION, "om_other", mentioned=False), WebReplyChannel()
    )
    assert chatter is None and core.fake.requests == []
    assert await core.store.find_thread(group("", "om_other", mentioned=False).thread_key) is None
    asked = await core.conversation.handle(
        group(VPN_QUESTION, "om_1", mentioned=True), WebReplyChannel()
    )
    assert asked is not None and asked.outcome is Outcome.ANSWERED
    # a follow-up in the thread the bot answered, without a mention: answered, once
    follow = group("And on a Mac?", "om_1", mentioned=False, message_id="om_2")
    reply = WebReplyChannel()
    answer = await core.conversation.handle(follow, reply)
    assert answer is not None and answer.outcome is Outcome.ANSWERED and reply.final is not None
    assert await core.conversation.handle(follow, WebReplyChannel()) is None
    assert len(core.fake.requests) == 2


@pytest.mark.parametrize(
    "policy",
    [
        PolicySettings(follow_ups=False),
        PolicySettings(followups_off=["feishu:*"]),
        PolicySettings(followups_off=["feishu:oc_group"]),
    ],
    ids=["follow_ups off", "the platform off", "the chat off"],
)
async def test_follow_ups_switched_off_need_a_mention_and_agents_still_take_over(
    tmp_path: Path,
    embedder: Embedder,
    sample_index: Path,
    fake_sglang: FakeSGLang,
    policy: PolicySettings,
) -> None:
    """`[policy] follow_ups` / `followups_off` decide in the core, for every platform: an
    un-mentioned message in a thread the bot answered needs a mention there; a mention is
    answered; an agent's reply still takes an escalated thread over."""
    core, kb = await make_core(tmp_path, embedder, sample_index, fake_sglang, policy=policy)

    def group(text: str, *, mentioned: bool, agent: bool = False) -> Inbound:
        return replace(
            inbound(text, "om_1"),
            platform="feishu",
            chat_id="oc_group",
            chat_type=ChatType.GROUP,
            mentioned=mentioned,
            sender=Sender("ou_agent" if agent else "ou_asker", is_agent=agent),
        )

    try:
        asked = await core.conversation.handle(
            group(VPN_QUESTION, mentioned=True), WebReplyChannel()
        )
        assert asked is not None and asked.outcome is Outcome.ANSWERED
        quiet = await core.conversation.handle(
            group("And on a Mac?", mentioned=False), WebReplyChannel()
        )
        assert quiet is None and len(core.fake.requests) == 1
        again = await core.conversation.handle(
            group("And on a Mac?", mentioned=True), WebReplyChannel()
        )
        assert again is not None and again.outcome is Outcome.ANSWERED
        handed = await core.conversation.handle(group("转人工", mentioned=True), WebReplyChannel())
        assert handed is not None and handed.outcome is Outcome.HANDED_OFF
        assert (
            await core.conversation.handle(
                group("我来", mentioned=False, agent=True), WebReplyChannel()
            )
            is None
        )
        thread = await core.store.thread(group("", mentioned=False).thread_key)
        assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "ou_agent")
    finally:
        await core.llm.close()
        await kb.close()
        await core.store.close()
