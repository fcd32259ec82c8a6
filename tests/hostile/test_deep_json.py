"""Deeply nested JSON on every intake: a 4xx before anything else reads it over HTTP, and an ack
and a log line on a stream, never a 5xx, a silent drop or a dead connection (Python's json
raises RecursionError ~1,000 levels down, which once escaped every handler)."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlencode

import pytest

from adapters.dingtalk.adapter import DingTalkAdapter
from adapters.feishu.adapter import FeishuAdapter
from tests.contract.test_dingtalk import WEBHOOK, markdown, settings_for
from tests.fakes.dingtalk import BOT_TOPIC, FakeDingTalk, bot_message
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import encrypt, message_event
from tests.fakes.feishu_events import signed_headers as feishu_signed
from tests.fakes.feishu_support import ENCRYPT_KEY, TOKEN, VPN, settle
from tests.fakes.feishu_support import settings_for as feishu_settings
from tests.fakes.slack import signed_headers as slack_signed
from tests.helpers import Core
from tests.hostile.test_intake import Served, served  # noqa: F401  # the fixture

DEEP = "[" * 100_000 + "]" * 100_000  # a stream frame (no body limit there)
DEEP_BODY = "[" * 30_000 + "]" * 30_000  # under the server's 64 KB body limit
DEEP_FORM = "[" * 9_000 + "]" * 9_000  # url-encoded: three bytes a bracket
NESTED = "[" * 1_000 + "]" * 1_000  # over the 64-level limit, under json's own recursion limit
REPLY = r"/open-apis/im/v1/messages/[^/]+/reply"


async def test_deep_json_on_every_webhook(served: Served) -> None:  # noqa: F811
    """One served app for all three (it takes long to start): Slack, the Feishu webhook, and a
    Feishu message whose content is nested deep."""
    await slack_refuses_deep_bodies_before_the_signature_check(served)
    await feishu_webhook_names_a_deep_body_for_what_it_is(served)
    await feishu_message_with_deep_content_gets_a_reply(served)


async def slack_refuses_deep_bodies_before_the_signature_check(app: Served) -> None:
    for deep, form_deep in ((DEEP_BODY, DEEP_FORM), (NESTED, NESTED)):
        body = '{"type": "event_callback", "event": ' + deep + "}"
        for headers in ({"content-type": "application/json"}, slack_signed(body)):
            response = await app.client.post("/slack/events", content=body, headers=headers)
            assert response.status_code == 400, response.text
            assert "nested deeper than 64 levels" in response.text
        form = urlencode({"payload": '{"type": "block_actions", "actions": ' + form_deep + "}"})
        headers = {**slack_signed(form), "content-type": "application/x-www-form-urlencoded"}
        response = await app.client.post("/slack/events", content=form, headers=headers)
        assert response.status_code == 400 and "payload is JSON nested deeper" in response.text


async def feishu_webhook_names_a_deep_body_for_what_it_is(app: Served) -> None:
    client = app.client
    response = await client.post("/feishu/events", content=DEEP_BODY.encode())
    assert response.status_code == 400 and "nested deeper" in response.text
    # encrypted with the right key: it decrypts, and is refused for its depth, not its key
    nested: list[object] = []
    for _ in range(200):
        nested = [nested]
    encrypted = json.dumps(encrypt(ENCRYPT_KEY, {"nested": nested})).encode()
    response = await client.post(
        "/feishu/events", content=encrypted, headers=feishu_signed(ENCRYPT_KEY, encrypted)
    )
    assert response.status_code == 400, response.text
    assert "decrypted event is JSON nested deeper" in response.text
    assert "wrong encrypt_key" not in response.text


async def feishu_message_with_deep_content_gets_a_reply(app: Served) -> None:
    message = message_event("x", token=TOKEN, message_id="om_deep")
    message["event"]["message"]["content"] = DEEP_BODY[:40_000]  # encrypted, it grows by 4/3
    body = json.dumps(encrypt(ENCRYPT_KEY, message)).encode()
    response = await app.client.post(
        "/feishu/events", content=body, headers=feishu_signed(ENCRYPT_KEY, body)
    )
    assert response.status_code == 200
    said = "nothing to answer yet"  # the unreadable content is named, the asker asked to type

    def told() -> bool:
        return any(said in json.dumps(c.body, ensure_ascii=False) for c in app.feishu.calls)

    await asyncio.to_thread(app.feishu.wait_for, told, 15)
    [reply] = app.feishu.calls_to("POST", REPLY)
    assert reply.path.endswith("/om_deep/reply")


async def test_feishu_long_connection_acks_what_it_cannot_read(core: Core) -> None:
    with FakeFeishu(ping_interval=1) as fake:
        adapter = FeishuAdapter(feishu_settings(fake, mode="long_connection"), core.conversation)
        await adapter.start()
        try:
            fake.push_event(DEEP.encode())
            fake.push_event(b"not json {")
            fake.push_event(b"\xff\xfe not UTF-8")
            other = message_event("x")
            other["header"]["event_type"] = "im.chat.member.bot.added_v1"
            fake.push_event(other)
            fake.push_event(message_event(VPN, message_id="om_after"))
            await asyncio.to_thread(fake.wait_for, lambda: len(fake.acks) == 5, 10)
            await asyncio.to_thread(fake.wait_for, lambda: bool(fake.calls_to("POST", REPLY)), 10)
            await settle(adapter)
            assert [a["code"] for a in fake.acks] == [200] * 5
            assert adapter.status().connected and fake.connections == 1
        finally:
            await adapter.stop()


async def until(condition: Callable[[], bool], within: float) -> None:
    async with asyncio.timeout(within):
        while not condition():
            await asyncio.sleep(0.05)


@pytest.fixture
async def dingtalk() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


async def test_dingtalk_stream_survives_a_poisoned_frame(
    dingtalk: FakeDingTalk, core: Core, caplog: pytest.LogCaptureFixture
) -> None:
    adapter = DingTalkAdapter(settings_for(dingtalk), core.conversation)
    await adapter.start()
    try:
        with caplog.at_level(logging.WARNING, logger="adapters.dingtalk.stream"):
            await dingtalk.send_raw(DEEP)
            deep_data = uuid.uuid4().hex
            frame = {
                "specVersion": "1.0",
                "type": "CALLBACK",
                "headers": {"messageId": deep_data, "topic": BOT_TOPIC},
                "data": DEEP,
            }
            await dingtalk.send_raw(json.dumps(frame))
            dropped = await dingtalk.ack(deep_data)  # acked, so never redelivered
            assert dropped["code"] == 200 and "nested deeper" in dropped["message"]
            good = await dingtalk.push(bot_message(webhook=dingtalk.webhook()))
            await dingtalk.ack(good)
            await adapter.drain()
            await dingtalk.wait_for(lambda: bool(dingtalk.sent(WEBHOOK)))
        assert "frame is JSON nested deeper than 64 levels" in caplog.text
        assert dingtalk.connected_total == 1 and adapter.status().connected
        assert markdown(dingtalk.sent(WEBHOOK)[0])  # the good message after them: answered
    finally:
        await adapter.stop()


async def test_dingtalk_stream_reconnects_after_any_failure(
    dingtalk: FakeDingTalk, core: Core, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapter = DingTalkAdapter(settings_for(dingtalk), core.conversation)
    await adapter.start()
    connection = adapter.connection
    real = connection._spawn
    calls = 0

    def broken_once(frame: dict[str, object]) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RecursionError("maximum recursion depth exceeded")  # anything at all
        real(frame)

    monkeypatch.setattr(connection, "_spawn", broken_once)
    try:
        started = time.monotonic()
        await dingtalk.push(bot_message(webhook=dingtalk.webhook()))
        await until(lambda: not adapter.status().connected, 5)
        assert "RecursionError" in adapter.status().detail  # what /readyz shows meanwhile
        await until(lambda: adapter.status().connected, 30)
        assert time.monotonic() - started < 30 and dingtalk.connected_total == 2
        good = await dingtalk.push(bot_message(webhook=dingtalk.webhook()))
        await dingtalk.ack(good)
    finally:
        await adapter.stop()
