"""An agent's message, decided by the core from the store: in a thread a person owns it takes the
thread over and gets no answer; where the platform has no threads (DingTalk), it takes the
escalated askers waiting in the chat — those the agent @mentions, else all — across restarts."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.web.adapter import WebReplyChannel
from engine.messages import Answer, ChatType, Inbound, Outcome, Sender
from engine.store.records import ThreadRecord
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


async def asker_thread(core: Core, who: str) -> ThreadRecord:
    """The asker's latest thread in the test group, where the platform has no threads."""
    since = datetime(2000, 1, 1, tzinfo=UTC)
    found = await core.store.latest_thread("dingtalk", "tk", "oc_group", who, since=since)
    assert found is not None
    return found


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
        return message(
            text, "", sender=who, agent=agent, mentions=mentions, threaded=False,
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
        assert (await asker_thread(restarted, "bob")).state is ThreadState.HUMAN
        assert (await asker_thread(restarted, "alice")).state is ThreadState.ESCALATED
        # no asker named: every one still waiting in the chat
        await say(restarted, ding("alice 你好", "mei", agent=True))
        thread = await asker_thread(restarted, "alice")
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


async def test_unthreaded_asker_past_the_idle_window_stays_with_the_person_who_has_the_thread(
    core: Core,
) -> None:
    """Where the platform has no threads the core keeps each asker's window in the store. While
    a person owns the asker's thread in that chat, a message after the idle window is recorded
    there and the bot says nothing; once it is resolved, the next one past the window opens a
    new conversation the bot answers."""

    def ding(text: str, *, who: str = "ada", window: float = 1800.0) -> Inbound:
        unthreaded = message(text, "", sender=who, threaded=False, platform="dingtalk")
        return replace(unthreaded, idle_window=window)

    handed, _ = await say(core, ding("转人工"))
    assert handed is not None and handed.outcome is Outcome.HANDED_OFF
    first = await asker_thread(core, "ada")
    quiet, reply = await say(core, ding(VPN, window=0))  # past the window, same asker
    assert quiet is not None and quiet.outcome is Outcome.HANDED_OFF
    assert reply.final is None and reply.updates == []
    assert (await asker_thread(core, "ada")).id == first.id
    assert len(await core.store.history(first.id, 10)) == 2  # both messages, one thread
    # someone else in the same chat is answered as usual, in a thread of their own
    other, _ = await say(core, ding(VPN, who="bo"))
    assert other is not None and other.outcome is Outcome.ANSWERED
    assert (await asker_thread(core, "bo")).id != first.id
    await core.store.set_state(first.id, ThreadState.RESOLVED, by="agent")
    again, _ = await say(core, ding(VPN, window=0))
    assert again is not None and again.outcome is Outcome.ANSWERED
    assert (await asker_thread(core, "ada")).id != first.id


async def test_unthreaded_asker_within_the_idle_window_continues_the_same_thread(
    core: Core,
) -> None:
    """The window is a core rule: the asker's latest thread in this chat while it is not idle,
    with the chat type and the asker stored on it (nothing kept in an adapter's memory)."""

    def ding(text: str, who: str = "ada") -> Inbound:
        return message(text, "", sender=who, threaded=False, platform="dingtalk")

    await say(core, ding(VPN))
    await say(core, ding("And on a Mac?"))
    thread = await asker_thread(core, "ada")
    assert (thread.chat_type, thread.asker_id) == (ChatType.GROUP, "ada")
    assert thread.key.thread_id.startswith("ada@")
    turns = await core.store.history(thread.id, 10)
    assert [t.question for t in turns] == [VPN, "And on a Mac?"]
    # the model saw the first question and answer as history when answering the second
    second = core.fake.requests[-1]["messages"]
    assert any(VPN in str(m.get("content")) for m in second[:-1])
