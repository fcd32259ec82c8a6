"""Escalation policy: triggers per channel, business-hours promises, resolve and reopen."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.web.adapter import WebReplyChannel
from engine.messages import Click, Outcome
from engine.store.tables import ThreadState
from engine.threads.escalation import (
    ChannelEscalation,
    EscalationSettings,
    asks_for_human,
    follow_up,
    next_business_start,
    resolves,
)
from tests.helpers import Core, inbound

VPN = "How do I reset my VPN connection?"
OFF_TOPIC = "What is the best pizza topping for a volcano picnic?"


@pytest.mark.parametrize(
    "text",
    ["转人工", "人工客服", "找人", "human", "Agent!", "talk to a person", "a real person please"],
)
def test_requests_for_a_person(text: str) -> None:
    assert asks_for_human(text)


@pytest.mark.parametrize(
    "text",
    ["How do I add a human user?", "agent install fails", "人工智能是什么", "the person in HR"],
)
def test_questions_are_not_requests_for_a_person(text: str) -> None:
    assert not asks_for_human(text)


@pytest.mark.parametrize(
    "text", ["/resolve", "已解决", "Resolved.", "problem solved", "问题已解决！"]
)
def test_resolve_commands(text: str) -> None:
    assert resolves(text)
    assert not resolves("is this resolved in the new version?")


def test_channel_overrides_platform_then_chat() -> None:
    settings = EscalationSettings(
        channels={
            "slack:*": ChannelEscalation(sla_minutes=30),
            "slack:C1": ChannelEscalation(on_no_grounding=True, max_unresolved_turns=3),
        }
    )
    chat = settings.for_chat("slack", "C1")
    assert (chat.on_no_grounding, chat.max_unresolved_turns, chat.sla_minutes) == (True, 3, 30)
    other = settings.for_chat("slack", "C2")
    assert (other.on_no_grounding, other.sla_minutes) == (False, 30)
    assert settings.for_chat("feishu", "C1").sla_minutes == 15


def test_unknown_time_zone_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown time zone"):
        EscalationSettings(timezone="Mars/Olympus")


def test_business_hours_promise() -> None:
    settings = EscalationSettings(timezone="Asia/Shanghai", sla_minutes=15)
    tuesday_10 = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # 10:00 in Shanghai
    assert next_business_start(tuesday_10, settings) is None
    assert "within 15 minutes" in follow_up(tuesday_10, settings, "en")
    assert "15 分钟内" in follow_up(tuesday_10, settings, "zh")
    tuesday_20 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)  # 20:00 in Shanghai
    assert "from 2026-11-25 09:00 (Asia/Shanghai)" in follow_up(tuesday_20, settings, "en")
    early = datetime(2026, 11, 24, 0, 0, tzinfo=UTC)  # 08:00 the same day
    assert "from 09:00" in follow_up(early, settings, "en")
    saturday = datetime(2026, 11, 28, 3, 0, tzinfo=UTC)
    assert "2026-11-30 09:00" in follow_up(saturday, settings, "zh")


def use(core: Core, **settings: object) -> None:
    core.conversation._lifecycle.escalation = EscalationSettings(**settings)  # type: ignore[arg-type]


async def test_no_grounding_escalates_only_where_the_channel_says_so(core: Core) -> None:
    answer, reply = await core.ask(OFF_TOPIC, thread="plain")
    assert answer is not None and answer.outcome is Outcome.NO_KNOWLEDGE
    assert reply.escalations == []
    use(core, channels={"web:c1": ChannelEscalation(on_no_grounding=True)})
    answer, reply = await core.ask(OFF_TOPIC, thread="cs")
    assert answer is not None and answer.outcome is Outcome.NO_KNOWLEDGE
    assert "couldn't find" in answer.text and "colleague" in answer.text
    assert [n.trigger for n in reply.escalations] == ["no_grounding"]
    assert reply.escalations[0].question == OFF_TOPIC
    thread = await core.store.thread(inbound("", "cs").thread_key)
    assert thread.state is ThreadState.ESCALATED


async def test_model_failure_trigger(core: Core) -> None:
    use(core, on_model_failure=True)
    core.fake.behave(fail_status=500)
    answer, reply = await core.ask(VPN, thread="mf")
    assert answer is not None and answer.outcome is Outcome.RETRIEVAL_ONLY
    assert [n.trigger for n in reply.escalations] == ["model_failure"]


async def test_unresolved_turns_trigger(core: Core) -> None:
    use(core, max_unresolved_turns=2)
    first, reply = await core.ask(VPN, thread="n")
    assert first is not None and reply.escalations == []
    second, reply = await core.ask("How do I reset my password?", thread="n")
    assert second is not None and second.outcome is Outcome.ANSWERED
    assert [n.trigger for n in reply.escalations] == ["unresolved_turns"]


async def test_request_trigger_can_be_switched_off(core: Core) -> None:
    use(core, on_request=False)
    answer, reply = await core.ask("转人工", thread="off")
    assert answer is not None and answer.outcome is not Outcome.HANDED_OFF
    assert reply.escalations == []


async def test_resolve_then_a_new_question_reopens(core: Core) -> None:
    await core.ask(VPN, thread="r")
    await core.ask("human", thread="r")
    quiet, _ = await core.ask("anyone?", thread="r")
    assert quiet is not None and quiet.outcome is Outcome.HANDED_OFF
    done, reply = await core.ask("已解决", thread="r")
    assert done is not None and done.outcome is Outcome.COMMAND
    assert "已标记为已解决" in done.text and reply.final == done
    thread = await core.store.thread(inbound("", "r").thread_key)
    assert thread.state is ThreadState.RESOLVED
    again, _ = await core.ask("How do I reset my password?", thread="r")
    assert again is not None and again.outcome is Outcome.ANSWERED
    thread = await core.store.thread(inbound("", "r").thread_key)
    assert thread.state is ThreadState.OPEN


async def test_negative_feedback_escalates_with_a_reply_channel(core: Core) -> None:
    answer, _ = await core.ask(VPN, thread="fb")
    assert answer is not None and answer.turn_id is not None
    await core.conversation.clicked(
        Click("down", "u1", answer.turn_id)
    )  # no channel: recorded only
    thread = await core.store.thread(inbound("", "fb").thread_key)
    assert thread.state is ThreadState.OPEN
    reply = WebReplyChannel()
    await core.conversation.clicked(Click("down", "u1", answer.turn_id), reply)
    assert [n.trigger for n in reply.escalations] == ["negative_feedback"]
    assert reply.escalations[0].question == VPN
    thread = await core.store.thread(inbound("", "fb").thread_key)
    assert thread.state is ThreadState.ESCALATED
    assert (await core.store.feedback(answer.turn_id))["u1"][0].value == "down"


async def test_resolving_a_human_answered_thread_makes_an_faq_candidate(core: Core) -> None:
    await core.ask("How do I order a second monitor?", thread="mon")
    await core.ask("转人工", thread="mon")
    key = inbound("x", "mon").thread_key
    assert await core.conversation.human_replied(key, "agent-7", "Use the IT shop, form HW-2.")
    assert not await core.conversation.human_replied(key, "agent-7", "It ships in 3 days.")
    answer, _ = await core.ask("已解决", thread="mon")
    assert answer is not None and answer.outcome is Outcome.COMMAND
    [candidate] = await core.store.handoffs.candidates()
    assert candidate.question == "How do I order a second monitor?"
    assert candidate.answer == "Use the IT shop, form HW-2.\n\nIt ships in 3 days."
    assert candidate.answered_by == "agent-7"
    handoff = await core.store.handoffs.latest(candidate.thread_id)
    assert handoff is not None and handoff.resolved_by == "asker"
    assert handoff.responded_at is not None


async def test_a_thread_where_nothing_was_asked_is_not_escalated(core: Core) -> None:
    """No blank escalation: an unknown thread, or one with only a command, is refused and left
    as it was (the web chat answers 409)."""
    from engine.threads.escalation import BUTTON
    from engine.threads.lifecycle import NothingAsked

    reply = WebReplyChannel()
    unknown = inbound("", "never-asked").thread_key
    with pytest.raises(NothingAsked):
        await core.conversation.clicked(Click("human", "u1", thread=unknown, trigger=BUTTON), reply)
    assert await core.store.find_thread(unknown) is None  # no row made on the way
    await core.ask("/resolve", thread="only-a-command")
    commanded = inbound("", "only-a-command").thread_key
    with pytest.raises(NothingAsked):
        await core.conversation.clicked(
            Click("human", "u1", thread=commanded, trigger=BUTTON), reply
        )
    assert reply.escalations == [] and await core.store.handoffs.listed(resolved=False) == []


async def test_feedback_names_the_chat_it_came_from(core: Core) -> None:
    answer, _ = await core.ask(VPN, thread="mine")
    assert answer is not None and answer.turn_id is not None
    key = inbound("", "mine").thread_key
    with pytest.raises(LookupError):  # the turn is not in that chat
        elsewhere = (key.platform, key.tenant, "another-chat")
        await core.conversation.clicked(Click("up", "u1", answer.turn_id, chat=elsewhere))
    with pytest.raises(LookupError):  # no such turn at all
        await core.conversation.clicked(Click("up", "u1", answer.turn_id + 1000))
    assert await core.store.feedback(answer.turn_id) == {}
    here = (key.platform, key.tenant, key.chat_id)
    await core.conversation.clicked(Click("up", "u1", answer.turn_id, chat=here))
    assert (await core.store.feedback(answer.turn_id))["u1"][0].value == "up"


def test_a_click_names_what_it_is_about() -> None:
    """One Click type for every button: an unknown action, or feedback without its turn, is a
    programming error at the adapter, not a silent no-op in the core."""
    with pytest.raises(ValueError, match="unknown click"):
        Click("maybe", "u1", 1)
    with pytest.raises(ValueError, match="names its turn"):
        Click("up", "u1")
    key = inbound("", "t").thread_key
    assert Click("human", "u1", thread=key).turn_id is None  # a thread is enough for a person
