"""The long connection for real: lark's ws.Client in its own thread against the fake gateway
(endpoint bootstrap, protobuf frames over a WebSocket, acks, pings), plus the watchdog."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Iterator

import pytest

from adapters.feishu.adapter import FeishuAdapter
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import card_action_event, message_event
from tests.fakes.feishu_support import VPN, settings_for, settle
from tests.helpers import Core

REPLY = r"/open-apis/im/v1/messages/[^/]+/reply"


@pytest.fixture
def fake_feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu(ping_interval=1) as fake:
        yield fake


def seen(fake: FakeFeishu, condition: Callable[[], bool], within: float = 10.0) -> Awaitable[None]:
    """Wait (off the loop) until the fake has recorded what `condition` looks for."""
    return asyncio.to_thread(fake.wait_for, condition, within)


async def test_event_over_the_long_connection_is_acked_and_answered(
    fake_feishu: FakeFeishu, core: Core
) -> None:
    adapter = FeishuAdapter(settings_for(fake_feishu, mode="long_connection"), core.conversation)
    assert adapter.router() is None  # no public URL needed
    await adapter.start()
    try:
        assert adapter.status().connected is True
        frame = fake_feishu.push_event(message_event(VPN, message_id="om_ws1"))
        await seen(fake_feishu, lambda: any(a["message_id"] == frame for a in fake_feishu.acks))
        await seen(fake_feishu, lambda: bool(fake_feishu.calls_to("POST", REPLY)))
        await settle(adapter)
        assert [a["code"] for a in fake_feishu.acks] == [200]
        [reply] = fake_feishu.calls_to("POST", REPLY)
        assert reply.path.endswith("/om_ws1/reply")

        # a reconnect's replay of the same message (new event id) is acked, not answered again
        fake_feishu.push_event(message_event(VPN, message_id="om_ws1"))
        await seen(fake_feishu, lambda: len(fake_feishu.acks) == 2)
        await settle(adapter)
        assert len(fake_feishu.calls_to("POST", REPLY)) == 1

        # a click answers with a toast in the ack
        click = card_action_event(
            {"tb": "up", "turn": 1, "tenant": "t", "chat": "c", "thread": "x", "mid": "m"}
        )
        fake_feishu.push_event(click)
        await seen(fake_feishu, lambda: len(fake_feishu.acks) == 3)
        assert "Thanks" in (fake_feishu.acks[2]["data"] or "")
        await settle(adapter)
    finally:
        await adapter.stop()
    assert not any(t.name == "feishu-ws" for t in threading.enumerate())
    assert adapter.status().connected is False


async def test_watchdog_renews_a_quiet_connection(fake_feishu: FakeFeishu, core: Core) -> None:
    # pongs come every second: 2.5 s of nothing means the socket stalled
    settings = settings_for(fake_feishu, mode="long_connection", watchdog_idle=2.5)
    adapter = FeishuAdapter(settings, core.conversation)
    await adapter.start()
    try:
        fake_feishu.silent = True  # no pongs, no events: a stalled socket
        await seen(fake_feishu, lambda: fake_feishu.connections >= 2, within=15)
        fake_feishu.silent = False
        await asyncio.to_thread(adapter._connection._connected.wait, 5)  # type: ignore[union-attr]
        # the renewed connection carries events again
        fake_feishu.push_event(message_event("hello", message_id="om_after", mention_bot=False))
        await seen(fake_feishu, lambda: len(fake_feishu.acks) == 1)
        status = adapter.status()
        assert "renewed" in status.detail and status.mode == "long connection"
    finally:
        await adapter.stop()
