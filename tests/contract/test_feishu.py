"""Feishu adapter against the fake Open API over real HTTP, events fed through lark's real
EventDispatcherHandler the way the long connection feeds them."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.feishu.adapter import FeishuAdapter
from engine.messages import ThreadKey
from engine.store.tables import ThreadState
from tests.fakes.feishu import BOT_OPEN_ID, TENANT, FakeFeishu
from tests.fakes.feishu_events import card_action_event, message_event
from tests.fakes.feishu_support import VPN, feed, settings_for
from tests.helpers import Core

CARD = r"/open-apis/cardkit/v1/cards"
ELEMENT = r"/open-apis/cardkit/v1/cards/[^/]+/elements/answer/content"
FINAL = r"/open-apis/cardkit/v1/cards/[^/]+"
REPLY = r"/open-apis/im/v1/messages/[^/]+/reply"


@pytest.fixture
def fake_feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


async def running(fake: FakeFeishu, core: Core, **changes: Any) -> FeishuAdapter:
    adapter = FeishuAdapter(settings_for(fake, **changes), core.conversation)
    await adapter.start()
    return adapter


@pytest.fixture
async def adapter(fake_feishu: FakeFeishu, core: Core) -> AsyncIterator[FeishuAdapter]:
    started = await running(fake_feishu, core)
    yield started
    await started.stop()


def elements(card: dict[str, Any]) -> list[dict[str, Any]]:
    return list(card["body"]["elements"])


def buttons(card: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for element in elements(card):
        for column in element.get("columns", []):
            found.extend(e for e in column["elements"] if e["tag"] == "button")
    return found


async def test_group_mention_streams_a_card_in_the_thread(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    assert adapter.bot_open_id == BOT_OPEN_ID  # fetched from bot/v3/info at start
    core.fake.behave(token_delay=0.03, chunk_chars=6)  # a visibly growing answer
    event = message_event(VPN, message_id="om_q1")
    await feed(adapter, event)

    created = fake_feishu.calls_to("POST", CARD)
    assert len(created) == 1
    first = created[0].body
    assert first["type"] == "card_json" and '"streaming_mode": true' in first["data"]
    [reply] = fake_feishu.calls_to("POST", REPLY)
    assert reply.path == "/open-apis/im/v1/messages/om_q1/reply"
    assert reply.body["msg_type"] == "interactive" and reply.body["reply_in_thread"] is False
    assert reply.content["type"] == "card" and reply.content["data"]["card_id"]

    streamed = fake_feishu.calls_to("PUT", ELEMENT)
    assert streamed, f"the answer should grow in the card: {fake_feishu.calls}"
    sequences = [c.body["sequence"] for c in streamed]
    assert sequences == sorted(set(sequences))
    texts = [c.body["content"] for c in streamed]
    assert all(later.startswith(earlier[:10]) for earlier, later in itertools.pairwise(texts))
    gaps = [b.at - a.at for a, b in itertools.pairwise(streamed)]
    assert all(gap >= 0.09 for gap in gaps), gaps  # throttled at update_interval = 0.1

    [settings] = fake_feishu.calls_to("PATCH", r"/open-apis/cardkit/v1/cards/[^/]+/settings")
    assert '"streaming_mode": false' in settings.body["settings"]
    [final] = fake_feishu.calls_to("PUT", FINAL)
    assert final.body["sequence"] > settings.body["sequence"] > sequences[-1]
    card = json.loads(final.body["card"]["data"])
    answer = elements(card)[0]["content"]
    assert "VPN" in answer
    assert "来源 / Sources" in elements(card)[2]["content"] and "1." in elements(card)[2]["content"]
    labels = [b["text"]["content"] for b in buttons(card)]
    assert labels == ["有帮助 / Helpful", "转人工 / Talk to a person"]
    value = buttons(card)[0]["behaviors"][0]["value"]
    assert value["mid"] == "om_q1" and value["tb"] == "up" and value["thread"] == "om_q1"


async def test_topic_message_is_answered_in_its_thread(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    event = message_event(VPN, message_id="om_t2", thread_id="omt_topic", root_id="om_t1")
    await feed(adapter, event)
    [reply] = fake_feishu.calls_to("POST", REPLY)
    assert reply.path.endswith("/om_t2/reply") and reply.body["reply_in_thread"] is True
    thread = await core.store.thread(ThreadKey("feishu", TENANT, "oc_group1", "omt_topic"))
    assert len(await core.store.history(thread.id, 5)) == 1


async def test_reply_to_an_answer_stays_in_the_root_thread(
    adapter: FeishuAdapter, core: Core
) -> None:
    await feed(adapter, message_event(VPN, message_id="om_root"))
    await feed(adapter, message_event("And on a Mac?", message_id="om_next", root_id="om_root"))
    thread = await core.store.thread(ThreadKey("feishu", TENANT, "oc_group1", "om_root"))
    assert len(await core.store.history(thread.id, 5)) == 2


async def test_direct_message_is_answered_without_a_mention(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu
) -> None:
    event = message_event(VPN, chat_type="p2p", chat_id="oc_dm", mention_bot=False)
    await feed(adapter, event)
    assert len(fake_feishu.calls_to("POST", REPLY)) == 1


async def test_group_message_without_mention_is_ignored(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    await feed(adapter, message_event(VPN, mention_bot=False))
    assert fake_feishu.calls_to("POST", REPLY) == []
    assert core.fake.requests == []


async def test_unmentioned_reply_in_a_thread_the_bot_answered_is_answered(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    await feed(adapter, message_event(VPN, message_id="om_root"))
    follow = message_event(
        "And on a Mac?", message_id="om_next", root_id="om_root", mention_bot=False
    )
    await feed(adapter, follow)
    await feed(adapter, follow)  # redelivered: answered once
    replies = fake_feishu.calls_to("POST", REPLY)
    assert [r.path.rsplit("/", 2)[-2] for r in replies] == ["om_root", "om_next"]
    assert len(core.fake.requests) == 2


async def test_redelivered_event_is_answered_once(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu
) -> None:
    first = message_event(VPN, message_id="om_dup")
    again = {**first, "header": {**first["header"], "event_id": "a-new-event-id"}}
    await asyncio.gather(feed(adapter, first), feed(adapter, again))
    await feed(adapter, first)
    assert len(fake_feishu.calls_to("POST", REPLY)) == 1
    assert len(fake_feishu.calls_to("PUT", FINAL)) == 1


async def test_update_failure_falls_back_to_one_plain_message(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    core.fake.behave(token_delay=0.03, chunk_chars=6)
    fake_feishu.fail("PUT", ELEMENT, code=230020)
    await feed(adapter, message_event(VPN, message_id="om_fail"))
    replies = fake_feishu.calls_to("POST", REPLY)
    assert [r.body["msg_type"] for r in replies] == ["interactive", "text"]
    text = replies[1].content["text"]
    assert "VPN" in text and "来源 / Sources" in text
    assert len(fake_feishu.calls_to("PUT", ELEMENT)) == 1  # no more updates after the failure
    assert fake_feishu.calls_to("PUT", FINAL) == []


async def test_message_patch_mode(fake_feishu: FakeFeishu, core: Core) -> None:
    core.fake.behave(token_delay=0.03, chunk_chars=6)
    adapter = await running(fake_feishu, core, use_cardkit=False)
    try:
        await feed(adapter, message_event(VPN, message_id="om_patch"))
    finally:
        await adapter.stop()
    assert fake_feishu.calls_to("POST", CARD) == []
    [reply] = fake_feishu.calls_to("POST", REPLY)
    assert reply.content["config"]["update_multi"] is True
    patches = fake_feishu.calls_to("PATCH", r"/open-apis/im/v1/messages/[^/]+")
    assert len(patches) >= 2
    final = patches[-1].content
    assert "VPN" in elements(final)[0]["content"] and len(buttons(final)) == 2


async def test_buttons_reach_the_core(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    await feed(adapter, message_event(VPN, message_id="om_btn"))
    card = json.loads(fake_feishu.calls_to("PUT", FINAL)[0].body["card"]["data"])
    helpful, human = (b["behaviors"][0]["value"] for b in buttons(card))

    response = await feed(adapter, card_action_event(helpful, operator="ou_clicker"))
    assert "Thanks" in response.toast.content
    assert await core.store.feedback(helpful["turn"]) == {"ou_clicker": ("up", "")}

    await feed(adapter, card_action_event(human, operator="ou_clicker"))
    [escalation] = fake_feishu.calls_to("POST", r"/open-apis/im/v1/messages")
    assert escalation.query["receive_id_type"] == "chat_id"
    assert escalation.body["receive_id"] == "oc_helpdesk"
    notice = elements(escalation.content)[0]["content"]
    assert (
        VPN in notice and "<at id=ou_agent_1></at>" in notice and "openChatId=oc_group1" in notice
    )
    replies = fake_feishu.calls_to("POST", REPLY)
    assert len(replies) == 2 and replies[1].path.endswith("/om_btn/reply")  # "a person will reply"
    thread = await core.store.thread(ThreadKey("feishu", TENANT, "oc_group1", "om_btn"))
    assert thread.state == ThreadState.ESCALATED


async def test_agent_message_in_escalated_thread_takes_it_over(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    await feed(adapter, message_event("转人工", message_id="om_h1"))
    assert len(fake_feishu.calls_to("POST", r"/open-apis/im/v1/messages")) == 1  # escalation card
    key = ThreadKey("feishu", TENANT, "oc_group1", "om_h1")
    assert (await core.store.thread(key)).state == ThreadState.ESCALATED

    agent_says = message_event(
        "I'll look into it", root_id="om_h1", sender="ou_agent_1", mention_bot=False
    )
    await feed(adapter, agent_says)
    assert (await core.store.thread(key)).state == ThreadState.HUMAN
    replies = len(fake_feishu.calls_to("POST", REPLY))
    await feed(adapter, message_event("thanks!", root_id="om_h1"))
    assert len(fake_feishu.calls_to("POST", REPLY)) == replies  # the bot stays quiet


async def test_an_image_that_cannot_be_downloaded_is_named_with_the_reason(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu
) -> None:
    event = message_event(
        message_type="image", content={"image_key": "img_v2_1"}, chat_type="p2p", mention_bot=False
    )
    await feed(adapter, event)
    [final] = fake_feishu.calls_to("PUT", FINAL)  # the streaming card, finished
    text = json_text(json.loads(final.body["card"]["data"]))  # no such image: code 234003
    assert "I could not read image-1: the download failed (the file is not part of" in text
    assert "nothing to answer yet" in text


def json_text(card: dict[str, Any]) -> str:
    return " ".join(e.get("content", "") for e in elements(card))


async def test_doctor_names_missing_permissions(fake_feishu: FakeFeishu, core: Core) -> None:
    adapter = FeishuAdapter(settings_for(fake_feishu), core.conversation)
    fake_feishu.scopes.add("im:message.group_msg")  # agents are configured: they need it
    checks = {c.name: c for c in await adapter.check()}
    assert checks["token"].status == "ok" and checks["bot"].status == "ok"
    assert checks["permissions"].status == "ok"
    fake_feishu.scopes -= {"im:message.group_at_msg:readonly", "im:message.group_msg"}
    checks = {c.name: c for c in await adapter.check()}
    missing = checks["permission im:message.group_at_msg:readonly"]
    assert missing.status == "error" and "@mention" in missing.detail
    assert checks["permission im:message.group_msg"].status == "warning"  # only for agents


async def test_wrong_secret_fails_start_with_the_fix(fake_feishu: FakeFeishu, core: Core) -> None:
    adapter = FeishuAdapter(
        settings_for(fake_feishu, app_secret=SecretStr("wrong")), core.conversation
    )
    with pytest.raises(RuntimeError, match="TEAMBOT_FEISHU__APP_SECRET"):
        await adapter.start()
    checks = await adapter.check()
    assert checks[0].name == "token" and checks[0].status == "error"
