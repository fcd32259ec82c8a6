"""An agent's message, decided by the core from the store: in a thread a person owns it takes the
thread over and gets no answer; where the platform has no threads (DingTalk), it takes the
escalated askers waiting in the chat — those the agent @mentions, else all — across restarts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.web.adapter import WebReplyChannel
from engine.messages import Answer, ChatType, Inbound, Outcome, Sender
from engine.store.tables import ThreadState
from knowledge import Embedder
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, make_core

VPN = "How do I reset my VPN connection?"


def message(
    text: str,
    thread: str,
    *,
    sender: str = "ou_asker",
    agent: bool = False,
    mentioned: bool = True,
    mentions: tuple[str, ...] = (),
    threaded: bool = True,
    platform: str = "feishu",
    message_id: str | None = None,
) -> Inbound:
    return Inbound(
        platform=platform,
        tenant="tk",
        chat_id="oc_group",
        chat_type=ChatType.GROUP,
        thread_id=thread,
        message_id=message_id or uuid.uuid4().hex,
        sender=Sender(sender, sender.title(), is_agent=agent),
        text=text,
        mentioned=mentioned,
        mentions=mentions,
        threaded=threaded,
    )


async def say(core: Core, inbound: Inbound) -> tuple[Answer | None, WebReplyChannel]:
    reply = WebReplyChannel()
    return await core.conversation.handle(inbound, reply), reply


async def state(core: Core, inbound: Inbound) -> ThreadState:
    return (await core.store.thread(inbound.thread_key)).state


async def test_agent_reply_in_an_escalated_thread_takes_it_over_unanswered(core: Core) -> None:
    asked, _ = await say(core, message("转人工", "om_1"))
    assert asked is not None and asked.outcome is Outcome.HANDED_OFF
    agent_says = message(
        "I'll look at it now.", "om_1", sender="ou_mei", agent=True, mentioned=False
    )
    answer, reply = await say(core, agent_says)
    assert answer is None and reply.final is None and reply.updates == []
    thread = await core.store.thread(agent_says.thread_key)
    assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "ou_mei")
    handoff = await core.store.handoffs.latest(thread.id)
    assert handoff is not None and handoff.responded_at is not None
    # a redelivery records nothing twice; the message is done, so no apology ever follows
    again, again_reply = await say(core, agent_says)
    assert again is None and again_reply.final is None
    [turn] = await core.store.history(thread.id, 5)
    assert turn.model_text.count("I'll look at it now.") == 1
    now = datetime.now(UTC)
    assert await core.store.upkeep.unanswered_events(now + timedelta(1), now - timedelta(1)) == []
    # the asker's next message is recorded, and the bot stays quiet
    later, later_reply = await say(core, message("still broken", "om_1", mentioned=False))
    assert later is not None and later.outcome is Outcome.HANDED_OFF and later_reply.final is None
    assert core.fake.requests == []


async def test_agent_elsewhere_takes_nothing_and_is_answered_when_they_ask(core: Core) -> None:
    await say(core, message("转人工", "om_1"))
    # at a channel's top level: a new thread of its own, not every thread of the channel
    top, _ = await say(
        core, message("Anyone seen my mug?", "om_top", sender="ou_mei", agent=True, mentioned=False)
    )
    assert top is None and await state(core, message("", "om_1")) is ThreadState.ESCALATED
    asks, reply = await say(core, message(VPN, "om_2", sender="ou_mei", agent=True))
    assert asks is not None and asks.outcome is Outcome.ANSWERED and reply.final is not None
    assert await state(core, message("", "om_1")) is ThreadState.ESCALATED


async def test_unthreaded_chat_agent_takes_the_mentioned_asker_after_a_restart(
    core: Core, tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> None:
    def ding(
        text: str, who: str, *, agent: bool = False, mentions: tuple[str, ...] = ()
    ) -> Inbound:
        thread = f"{who}@1700000000"  # the adapter's window: asker and its start
        return message(
            text, thread, sender=who, agent=agent, mentions=mentions, threaded=False,
            platform="dingtalk",
        )  # fmt: skip

    for asker in ("alice", "bob"):
        answer, _ = await say(core, ding("转人工", asker))
        assert answer is not None and answer.outcome is Outcome.HANDED_OFF
    # a fresh Conversation on a fresh store over the same database: nothing kept in memory
    restarted, kb = await make_core(tmp_path, embedder, sample_index, fake_sglang)
    try:
        took, reply = await say(restarted, ding("我来处理", "mei", agent=True, mentions=("bob",)))
        assert took is None and reply.final is None
        assert await state(restarted, ding("", "bob")) is ThreadState.HUMAN
        assert await state(restarted, ding("", "alice")) is ThreadState.ESCALATED
        # no asker named: every one still waiting in the chat
        await say(restarted, ding("alice 你好", "mei", agent=True))
        thread = await restarted.store.thread(ding("", "alice").thread_key)
        assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "mei")
        # nobody waits any more: the agent's question is answered like anyone's
        asks, _ = await say(restarted, ding(VPN, "mei", agent=True))
        assert asks is not None and asks.outcome is Outcome.ANSWERED
    finally:
        await restarted.llm.close()
        await kb.close()
        await restarted.store.close()


async def test_unthreaded_group_message_without_a_mention_is_for_someone_else(core: Core) -> None:
    def ding(text: str, *, mentioned: bool) -> Inbound:
        return message(
            text, "ada@1700000000", sender="ada", threaded=False, platform="dingtalk",
            mentioned=mentioned,
        )  # fmt: skip

    asked, _ = await say(core, ding(VPN, mentioned=True))
    assert asked is not None and asked.outcome is Outcome.ANSWERED
    # the same asker's window is in the store, but a DingTalk group has no threads to follow
    chatter, reply = await say(core, ding("lunch at noon?", mentioned=False))
    assert chatter is None and reply.final is None
    assert len(core.fake.requests) == 1


async def test_unthreaded_asker_in_a_new_window_stays_with_the_person_who_has_the_thread(
    core: Core,
) -> None:
    """DingTalk's windows live in the adapter's memory: after a restart (or an idle gap) the
    asker's next message arrives with a new window id. While a person owns the asker's thread
    in that chat, the message is recorded there and the bot says nothing; once it is resolved,
    a new window is a new conversation the bot answers."""

    def ding(text: str, window: int, *, who: str = "ada") -> Inbound:
        return message(
            text, f"{who}@{window}", sender=who, threaded=False, platform="dingtalk"
        )  # fmt: skip

    handed, _ = await say(core, ding("转人工", 1700000000))
    assert handed is not None and handed.outcome is Outcome.HANDED_OFF
    quiet, reply = await say(core, ding(VPN, 1700009999))  # a new window, same asker
    assert quiet is not None and quiet.outcome is Outcome.HANDED_OFF
    assert reply.final is None and reply.updates == []
    assert await core.store.find_thread(ding("", 1700009999).thread_key) is None
    first = await core.store.thread(ding("", 1700000000).thread_key)
    assert len(await core.store.history(first.id, 10)) == 2  # both messages, one thread
    # someone else in the same chat is answered as usual
    other, _ = await say(core, ding(VPN, 1700009999, who="bo"))
    assert other is not None and other.outcome is Outcome.ANSWERED
    await core.store.set_state(first.id, ThreadState.RESOLVED, by="agent")
    again, _ = await say(core, ding(VPN, 1700020000))
    assert again is not None and again.outcome is Outcome.ANSWERED
