"""The DingTalk adapter with the real dingtalk-stream SDK against a fake DingTalk over real
HTTP and WebSocket (tests/fakes/dingtalk.py), answering through a real core."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.dingtalk.config import DingTalkSettings
from engine.messages import Answer, ChatType, Outcome
from engine.store.tables import ThreadState
from knowledge import Embedder
from tests.fakes.dingtalk import CARD_TOPIC, FakeDingTalk, bot_message
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, make_core

WEBHOOK = "/robot/sendBySession"
GROUP_SEND = "/v1.0/robot/groupMessages/send"
DIRECT_SEND = "/v1.0/robot/oToMessages/batchSend"
CARD_CREATE = "/v1.0/card/instances/createAndDeliver"
CARD_STREAM = "/v1.0/card/streaming"
CARD_UPDATE = "/v1.0/card/instances"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


def settings_for(fake: FakeDingTalk, **changes: Any) -> DingTalkSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "client_id": fake.client_id,
        "client_secret": SecretStr(fake.client_secret),
        "openapi_endpoint": fake.base_url,
        "thinking_notice_after": 5.0,
        "update_interval": 0.05,
        "watchdog_idle": 30.0,
        "reconnect_initial": 0.05,
        "reconnect_max": 0.2,
        **changes,
    }
    return DingTalkSettings(**values)


@asynccontextmanager
async def running(fake: FakeDingTalk, core: Core, **changes: Any) -> AsyncIterator[DingTalkAdapter]:
    adapter = DingTalkAdapter(settings_for(fake, **changes), core.conversation)
    await adapter.start()
    try:
        assert adapter.status().connected
        yield adapter
    finally:
        await adapter.stop()


async def settle(fake: FakeDingTalk, adapter: DingTalkAdapter, frame: str) -> None:
    """Wait until the frame is acked (the adapter took it) and its work is done."""
    await fake.ack(frame)
    await adapter.drain()


def markdown(call: Any) -> str:
    """The markdown text of a session-webhook or robot OpenAPI send."""
    if "markdown" in call.body:
        return str(call.body["markdown"]["text"])
    import json

    return str(json.loads(call.body["msgParam"])["text"])


async def test_group_mention_is_acked_at_once_and_answered_with_the_asker_mentioned(
    fake: FakeDingTalk, core: Core
) -> None:
    async with running(fake, core) as adapter:
        pushed = time.monotonic()
        frame = await fake.push(bot_message(webhook=fake.webhook()))
        ack = await fake.ack(frame)
        assert ack["code"] == 200 and ack["headers"]["messageId"] == frame
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    [reply] = fake.sent(WEBHOOK)
    assert fake.acked_at[frame] < reply.at  # the ack did not wait for the answer
    assert fake.acked_at[frame] - pushed < 0.5
    assert reply.body["msgtype"] == "markdown"
    assert reply.body["at"]["atUserIds"] == ["staff-ada"]
    text = markdown(reply)
    assert text.startswith("@staff-ada\n")
    assert 'I saw your question "How do I reset my VPN connection?"' in text
    assert "**Sources**" in text and "vpn" in text.lower()
    assert fake.sent(GROUP_SEND, DIRECT_SEND, CARD_CREATE) == []


async def test_one_to_one_is_answered_without_a_mention(fake: FakeDingTalk, core: Core) -> None:
    async with running(fake, core) as adapter:
        await fake.push(
            bot_message(
                "How many days of annual leave do I get?", group=False, webhook=fake.webhook()
            )
        )
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    [reply] = fake.sent(WEBHOOK)
    text = markdown(reply)
    assert not text.startswith("@") and "annual leave" in text
    assert "leave-policy" in text


async def test_group_message_without_a_mention_is_ignored(fake: FakeDingTalk, core: Core) -> None:
    async with running(fake, core) as adapter:
        frame = await fake.push(bot_message(mentioned=False, webhook=fake.webhook()))
        assert (await fake.ack(frame))["code"] == 200
        await adapter.drain()
    assert fake.sent(WEBHOOK, GROUP_SEND) == []


async def test_expired_session_webhook_falls_back_to_the_robot_openapi(
    fake: FakeDingTalk, core: Core
) -> None:
    async with running(fake, core) as adapter:
        await fake.push(bot_message(webhook=fake.webhook(), expires_in_ms=-1000))
        await fake.push(bot_message(group=False, webhook=fake.webhook(), expires_in_ms=-1000))
        await fake.wait_for(lambda: bool(fake.sent(GROUP_SEND)) and bool(fake.sent(DIRECT_SEND)))
        await adapter.drain()
    assert fake.sent(WEBHOOK) == []
    [group] = fake.sent(GROUP_SEND)
    assert group.body["openConversationId"] == "cid-group-1"
    assert group.body["robotCode"] == fake.client_id and group.body["msgKey"] == "sampleMarkdown"
    assert markdown(group).startswith("@Ada\n")
    [direct] = fake.sent(DIRECT_SEND)
    assert direct.body["userIds"] == ["staff-ada"]
    assert direct.headers["x-acs-dingtalk-access-token"] == "token-1"
    assert fake.tokens_issued == 1  # cached for the second send


async def test_failing_session_webhook_falls_back_to_the_openapi(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.behave(fail_webhook=True)
    async with running(fake, core) as adapter:
        await fake.push(bot_message(group=False, webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(DIRECT_SEND)))
        await adapter.drain()
    assert len(fake.sent(WEBHOOK)) == 1 and len(fake.sent(DIRECT_SEND)) == 1


async def test_redelivery_after_a_reconnect_is_answered_once(
    fake: FakeDingTalk, core: Core
) -> None:
    message = bot_message(webhook=fake.webhook())
    async with running(fake, core) as adapter:
        first = await fake.push(message)
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await fake.drop()
        await fake.wait_for(lambda: fake.connected_total == 2 and len(fake.sockets) == 1)
        again = await fake.push(message)  # same msgId, new frame id, new connection
        assert (await fake.ack(again))["code"] == 200 and first != again
        await settle(fake, adapter, again)
    assert len(fake.sent(WEBHOOK)) == 1


async def test_dropped_connection_is_reconnected_and_the_next_message_answered(
    fake: FakeDingTalk, core: Core
) -> None:
    async with running(fake, core) as adapter:
        await fake.drop()
        await fake.wait_for(lambda: fake.connected_total == 2 and len(fake.sockets) == 1)
        await asyncio.wait_for(adapter.connection.ready.wait(), 5)
        assert adapter.status().connected
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()
        assert adapter.connection.connects == 2
    assert fake.opens == 2


async def test_watchdog_reconnects_a_connection_that_went_quiet(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.behave(ping_interval=0.05)
    async with running(fake, core, watchdog_idle=0.4) as adapter:
        # pings are frames: 15 of them acked (~0.75 s) and still the first connection
        await fake.wait_for(lambda: len(fake.acks) >= 15)
        assert fake.connected_total == 1
        fake.behave(ping_interval=None)  # the gateway goes silent, TCP stays up
        await fake.wait_for(lambda: fake.connected_total == 2, within=5)
        assert "no frame" in adapter.status().detail
        await fake.wait_for(lambda: len(fake.sockets) == 1)
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()


async def test_stop_returns_promptly_even_while_reconnecting(
    fake: FakeDingTalk, core: Core
) -> None:
    adapter = DingTalkAdapter(settings_for(fake, reconnect_max=10.0), core.conversation)
    await adapter.start()
    fake.behave(refuse_open=True)
    await fake.drop()
    # refused again and again: 0.05, 0.1, 0.2, 0.4, 0.8 s apart, then a 1.6 s pause
    await fake.wait_for(lambda: len(fake.sent("/v1.0/gateway/connections/open")) == 6)
    started = time.monotonic()
    await adapter.stop()
    assert time.monotonic() - started < 1.5
    assert not adapter.status().connected


async def test_stop_while_connected_closes_the_connection(fake: FakeDingTalk, core: Core) -> None:
    adapter = DingTalkAdapter(settings_for(fake), core.conversation)
    await adapter.start()
    started = time.monotonic()
    await adapter.stop()
    assert time.monotonic() - started < 1.5
    await fake.wait_for(lambda: not fake.sockets)
    assert fake.opens == 1


async def test_ai_card_is_streamed_and_finalised_and_its_buttons_reach_the_core(
    fake: FakeDingTalk, core: Core
) -> None:
    core.fake.behave(token_delay=0.03)
    async with running(
        fake,
        core,
        card_template_id="tpl-ai.schema",
        escalation_conversation_id="cid-helpdesk",
        agents=["agent-bob"],
    ) as adapter:
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(
            lambda: any(
                c.body["cardData"]["cardParamMap"].get("flowStatus") == "3"
                for c in fake.sent(CARD_UPDATE)
            )
        )
        await adapter.drain()
        [create] = fake.sent(CARD_CREATE)
        card = create.body["outTrackId"]
        assert create.body["cardTemplateId"] == "tpl-ai.schema"
        assert create.body["openSpaceId"] == "dtv1.card//IM_GROUP.cid-group-1"
        assert create.body["imGroupOpenDeliverModel"]["atUserIds"] == {"staff-ada": "Ada"}
        streams = fake.sent(CARD_STREAM)
        assert len(streams) >= 3  # streamed in several updates, then finalised
        assert all(s.body["outTrackId"] == card and s.body["key"] == "content" for s in streams)
        assert [s.body["isFinalize"] for s in streams][-1] is True
        assert not any(s.body["isFinalize"] for s in streams[:-1])
        final = streams[-1].body["content"]
        assert 'I saw your question "How do I reset my VPN connection?"' in final
        assert "**Sources**" in final
        statuses = [
            c.body["cardData"]["cardParamMap"]["flowStatus"] for c in fake.sent(CARD_UPDATE)
        ]
        assert statuses == ["2", "3"]
        turn_id = int(fake.sent(CARD_UPDATE)[-1].body["cardData"]["cardParamMap"]["turn_id"])
        assert fake.sent(WEBHOOK) == []

        await settle(fake, adapter, await fake.push(card_click(card, "helpful"), topic=CARD_TOPIC))
        assert (await core.store.feedback(turn_id))["user-carl"][0] == "up"

        await fake.push(card_click(card, "human"), topic=CARD_TOPIC)
        await fake.wait_for(lambda: bool(fake.sent(GROUP_SEND)) and bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    [notice] = fake.sent(GROUP_SEND)
    assert notice.body["openConversationId"] == "cid-helpdesk"
    assert "@agent-bob" in markdown(notice) and "How do I reset my VPN" in markdown(notice)
    [told] = fake.sent(WEBHOOK)  # the asker hears that a person will reply
    assert "colleague" in markdown(told)


def card_click(card: str, action: str, turn_id: int | None = None) -> dict[str, Any]:
    """A button callback; with `turn_id` as a template whose buttons send the card's turn_id
    variable back (docs/platforms.md), without it as one whose buttons send only the action."""
    import json

    params: dict[str, str] = {"action": action}
    if turn_id is not None:
        params["turn_id"] = str(turn_id)
    private = {"actionIds": [action], "params": params}
    return {
        "outTrackId": card,
        "corpId": "ding-corp",
        "userId": "user-carl",
        "type": "actionCallback",
        "content": json.dumps({"cardPrivateData": private}),
    }


async def test_card_failure_falls_back_to_one_markdown_message(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.behave(fail_cards=True)
    async with running(fake, core, card_template_id="tpl-ai.schema") as adapter:
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    assert len(fake.sent(CARD_CREATE)) == 1 and fake.sent(CARD_STREAM) == []
    [reply] = fake.sent(WEBHOOK)
    text = markdown(reply)
    assert 'I saw your question "How do I reset my VPN connection?"' in text
    assert "**Sources**" in text and "转人工" in text


async def test_slow_answer_gets_one_thinking_notice_first(fake: FakeDingTalk, core: Core) -> None:
    core.fake.behave(latency=0.6)
    async with running(fake, core, thinking_notice_after=0.1) as adapter:
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(lambda: len(fake.sent(WEBHOOK)) == 2)
        await adapter.drain()
    notice, answer = fake.sent(WEBHOOK)
    assert markdown(notice).endswith("Thinking…")
    assert "I saw your question" in markdown(answer)


async def test_a_picture_that_cannot_be_downloaded_is_named_with_the_reason(
    fake: FakeDingTalk, core: Core
) -> None:
    async with running(fake, core) as adapter:
        picture = bot_message(
            msgtype="picture", content={"downloadCode": "dl1"}, webhook=fake.webhook()
        )
        await fake.push(picture)
        await fake.wait_for(lambda: bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    # the fake holds no file for "dl1": DingTalk answers the code as invalid
    text = markdown(fake.sent(WEBHOOK)[0])
    assert "I could not read image-1: the download failed (the download code is invalid" in text
    assert "nothing to answer yet" in text


async def test_escalation_then_agent_takes_the_thread_over(fake: FakeDingTalk, core: Core) -> None:
    helpdesk = {"escalation_conversation_id": "cid-helpdesk", "agents": ["agent-bob"]}
    async with running(fake, core, **helpdesk) as adapter:
        await fake.push(bot_message("转人工", webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(GROUP_SEND)) and bool(fake.sent(WEBHOOK)))
        await adapter.drain()
        assert "@agent-bob" in markdown(fake.sent(GROUP_SEND)[0])
        assert "人工" in markdown(fake.sent(WEBHOOK)[0])
        # the agent writes in the asker's group: the thread is theirs, the bot stays quiet
        agent = bot_message("我来处理", sender="agent-bob", nick="Bob", webhook=fake.webhook())
        await settle(fake, adapter, await fake.push(agent))
        again = bot_message("How do I reset my VPN connection?", webhook=fake.webhook())
        await settle(fake, adapter, await fake.push(again))
    assert len(fake.sent(WEBHOOK)) == 1


async def test_an_agent_takes_the_waiting_asker_after_a_restart(
    fake: FakeDingTalk, core: Core
) -> None:
    helpdesk = {"escalation_conversation_id": "cid-helpdesk", "agents": ["agent-bob"]}
    async with running(fake, core, **helpdesk) as adapter:
        await fake.push(bot_message("转人工", webhook=fake.webhook()))
        await fake.wait_for(lambda: bool(fake.sent(GROUP_SEND)) and bool(fake.sent(WEBHOOK)))
        await adapter.drain()
    [(waiting, asker)] = await core.store.waiting_threads("dingtalk", "ding-corp", "cid-group-1")
    assert asker == "staff-ada"
    # who waits in the group comes from the store, not from the adapter's memory
    async with running(fake, core, **helpdesk) as adapter:
        agent = bot_message("我来处理", sender="agent-bob", nick="Bob", webhook=fake.webhook())
        await settle(fake, adapter, await fake.push(agent))
    thread = await core.store.thread(waiting.key)
    assert (thread.state, thread.taken_by) == (ThreadState.HUMAN, "agent-bob")
    assert len(fake.sent(WEBHOOK)) == 1  # the agent's message got no answer


async def test_doctor_checks_credentials_and_gateway(fake: FakeDingTalk, core: Core) -> None:
    good = DingTalkAdapter(settings_for(fake), core.conversation)
    checks = {c.name: c for c in await good.check()}
    assert checks["credentials"].status == "ok" and checks["stream"].status == "ok"
    assert checks["escalation"].status == "warning"
    await good.api.close()
    bad = DingTalkAdapter(settings_for(fake, client_secret=SecretStr("wrong")), core.conversation)
    [check] = await bad.check()
    assert check.status == "error"
    assert (
        "invalidClientIdOrSecret" in check.detail
        and "TEAMBOT_DINGTALK__CLIENT_SECRET" in check.detail
    )
    await bad.api.close()


Restart = Callable[[], Awaitable[Core]]


@pytest.fixture
async def restart(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Restart]:
    """A new core over the same database, as a restarted (or another) serving process has:
    nothing of the first one's memory, only what the store kept."""
    opened: list[tuple[Core, Any]] = []

    async def again() -> Core:
        built, kb = await make_core(tmp_path, embedder, sample_index, fake_sglang)
        opened.append((built, kb))
        return built

    yield again
    for built, kb in opened:
        await built.llm.close()
        await kb.close()
        await built.store.close()


async def test_a_conversation_continues_with_its_history_after_a_restart(
    fake: FakeDingTalk, core: Core, restart: Restart
) -> None:
    async with running(fake, core) as adapter:
        await settle(fake, adapter, await fake.push(bot_message(webhook=fake.webhook())))
    restarted = await restart()
    async with running(fake, restarted) as adapter:
        follow = bot_message("And what if it still fails after that?", webhook=fake.webhook())
        await settle(fake, adapter, await fake.push(follow))
    # one thread, both turns, and the model was shown the first question as history
    [(thread, asker)] = [
        (t, a)
        for t, a in await restarted.store.waiting_threads(
            "dingtalk", "ding-corp", "cid-group-1", states=(ThreadState.OPEN,)
        )
    ]
    assert asker == "staff-ada"
    turns = await restarted.store.history(thread.id, 10)
    assert [t.question for t in turns] == [
        "How do I reset my VPN connection?",
        "And what if it still fails after that?",
    ]
    second = restarted.fake.requests[-1]["messages"]
    assert any("How do I reset my VPN connection?" in str(m["content"]) for m in second[:-1])
    assert len(fake.sent(WEBHOOK)) == 2  # both answered


async def test_a_card_sent_before_a_restart_still_takes_clicks(
    fake: FakeDingTalk, core: Core, restart: Restart
) -> None:
    cards = {
        "card_template_id": "tpl-ai.schema",
        "escalation_conversation_id": "cid-helpdesk",
        "agents": ["agent-bob"],
    }
    async with running(fake, core, **cards) as adapter:
        await fake.push(bot_message(webhook=fake.webhook()))
        await fake.wait_for(
            lambda: any(
                c.body["cardData"]["cardParamMap"].get("flowStatus") == "3"
                for c in fake.sent(CARD_UPDATE)
            )
        )
        await adapter.drain()
    card = fake.sent(CARD_CREATE)[0].body["outTrackId"]
    turn_id = int(fake.sent(CARD_UPDATE)[-1].body["cardData"]["cardParamMap"]["turn_id"])
    restarted = await restart()
    async with running(fake, restarted, **cards) as adapter:
        helpful = card_click(card, "helpful", turn_id)
        await settle(fake, adapter, await fake.push(helpful, topic=CARD_TOPIC))
        assert (await restarted.store.feedback(turn_id))["user-carl"][0] == "up"
        human = card_click(card, "human", turn_id)
        await settle(fake, adapter, await fake.push(human, topic=CARD_TOPIC))
    sent = {c.body["openConversationId"]: markdown(c) for c in fake.sent(GROUP_SEND)}
    assert "How do I reset my VPN" in sent["cid-helpdesk"]  # the agents are asked
    assert "colleague" in sent["cid-group-1"]  # and the asker, in the group, is told
    [(waiting, asker)] = await restarted.store.waiting_threads(
        "dingtalk", "ding-corp", "cid-group-1"
    )
    assert asker == "staff-ada" and waiting.escalation_trigger == "button"


async def test_a_click_without_its_turn_on_an_unknown_card_is_dropped(
    fake: FakeDingTalk, core: Core
) -> None:
    """A template whose buttons send only the action: cards of this process are remembered,
    another card's click is logged and acked, never a crash."""
    async with running(fake, core, card_template_id="tpl-ai.schema") as adapter:
        await settle(
            fake, adapter, await fake.push(card_click("unknown", "human"), topic=CARD_TOPIC)
        )
    assert fake.sent(GROUP_SEND) == [] and fake.sent(WEBHOOK) == []


async def test_a_reply_into_a_one_to_one_thread_after_a_restart_goes_one_to_one(
    fake: FakeDingTalk, core: Core, restart: Restart
) -> None:
    """Console replies, reminders and apologies post unprompted: after a restart the adapter
    has seen no message of the chat, and the chat type the store keeps says where to post."""
    async with running(fake, core) as adapter:
        asked = bot_message(
            "How many days of annual leave do I get?", group=False, webhook=fake.webhook()
        )
        await settle(fake, adapter, await fake.push(asked))
    restarted = await restart()
    [thread] = [
        t
        for t, _ in await restarted.store.waiting_threads(
            "dingtalk", "ding-corp", asked["conversationId"], states=(ThreadState.OPEN,)
        )
    ]
    assert thread.chat_type is ChatType.DIRECT
    async with running(fake, restarted) as adapter:
        blind = adapter.reply_channel(thread.key)  # what an older caller, without it, got
        told = adapter.reply_channel(thread.key, thread.chat_type)
        assert blind is not None and told is not None
        await told.finish(Answer(text="A colleague answers: 15 days.", outcome=Outcome.HANDED_OFF))
    [direct] = fake.sent(DIRECT_SEND)
    assert "15 days" in markdown(direct) and direct.body["userIds"] == ["staff-ada"]
    assert fake.sent(GROUP_SEND) == []
