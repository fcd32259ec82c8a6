"""DingTalk Stream against garbled frames and a gateway that hangs: the connection survives a
bad frame, odd field types are answered, and a connection-open that never returns times out."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from adapters.dingtalk.adapter import DingTalkAdapter
from tests.contract.test_dingtalk import WEBHOOK, markdown, settings_for
from tests.fakes.dingtalk import BOT_TOPIC, FakeDingTalk, bot_message
from tests.helpers import Core


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


async def push_escaped(fake: FakeDingTalk, data: dict[str, Any]) -> str:
    """A CALLBACK frame with everything outside ASCII escaped, as JSON may carry a lone
    surrogate that no UTF-8 text can."""
    frame_id = uuid.uuid4().hex
    frame = {
        "specVersion": "1.0",
        "type": "CALLBACK",
        "headers": {"messageId": frame_id, "topic": BOT_TOPIC, "contentType": "application/json"},
        "data": json.dumps(data),
    }
    await fake.send_raw(json.dumps(frame))
    return frame_id


async def test_bad_frames_do_not_end_the_connection(fake: FakeDingTalk, core: Core) -> None:
    adapter = DingTalkAdapter(settings_for(fake), core.conversation)
    await adapter.start()
    try:
        for garbage in ("not json", "[1, 2]", "\udcff".encode("utf-8", "surrogatepass").hex(), "{"):
            await fake.send_raw(garbage)
        number = bot_message(webhook=fake.webhook())
        number["text"] = {"content": 12345}
        number["createAt"] = "abc"
        surrogate = bot_message("VPN\ud800 reset?\x00", webhook=fake.webhook())
        surrogate["sessionWebhookExpiredTime"] = "later"  # dropped: the OpenAPI answers instead
        frames = [await fake.push(number), await push_escaped(fake, surrogate)]
        for frame in frames:
            await fake.ack(frame)
        await adapter.drain()
        await fake.wait_for(lambda: len(fake.sent(WEBHOOK)) + len(fake.calls) > 0)
        assert fake.connected_total == 1 and adapter.status().connected
    finally:
        await adapter.stop()
    answers = fake.sent(WEBHOOK, "/v1.0/robot/groupMessages/send")
    texts = [markdown(call) for call in answers]
    assert len(texts) == 2, texts  # the number and the surrogate question: both answered
    assert any("knowledge base" in text for text in texts), texts  # "12345" has no grounding
    assert any("VPN" in text and "reset" in text for text in texts), texts


async def test_a_hanging_connection_open_times_out_and_recovers(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.behave(hang_open=True)
    adapter = DingTalkAdapter(settings_for(fake, open_timeout=0.5), core.conversation)
    await adapter.start()  # returns after its wait even though the gateway never answers
    try:
        assert not adapter.status().connected
        started = time.monotonic()
        checks = await adapter.check()  # `teambot doctor` does not hang either
        assert time.monotonic() - started < 10
        assert any(c.name == "stream" and c.status == "error" for c in checks)
        assert "open connection failed" in adapter.status().detail
        fake.behave(hang_open=False)
        async with asyncio.timeout(10):  # the reconnect loop was never stuck
            while not adapter.status().connected:
                await asyncio.sleep(0.1)
        frame = await fake.push(bot_message(webhook=fake.webhook()))
        await fake.ack(frame)
        await adapter.drain()
        assert json.dumps(fake.sent(WEBHOOK)[0].body)
    finally:
        await adapter.stop()
