"""Feishu over the long connection (events fed as the SDK's connection hands them over): a card
is never left at "Looking it up…" when the answer fails inside teambot, and a lone surrogate is
answered like any question."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from adapters.feishu.adapter import FeishuAdapter
from engine.answer import ending
from tests.contract.test_feishu import FINAL, elements
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import message_event
from tests.fakes.feishu_support import VPN, feed, settings_for
from tests.helpers import Core


@pytest.fixture
def fake_feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


@pytest.fixture
async def adapter(fake_feishu: FakeFeishu, core: Core) -> AsyncIterator[FeishuAdapter]:
    started = FeishuAdapter(settings_for(fake_feishu), core.conversation)
    await started.start()
    yield started
    await started.stop()


def final_text(fake: FakeFeishu) -> list[str]:
    return [
        elements(json.loads(call.body["card"]["data"]))[0]["content"]
        for call in fake.calls_to("PUT", FINAL)
    ]


async def test_a_failing_answer_finishes_its_card(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("index exploded")

    core.conversation._retriever.retrieve = broken  # type: ignore[method-assign]
    await feed(adapter, message_event("VPN 怎么连接？", message_id="om_fail"))
    assert final_text(fake_feishu) == [ending.phrase("failed", "zh")]


async def test_a_lone_surrogate_is_answered(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu
) -> None:
    payload = message_event(VPN, message_id="om_surrogate")
    payload["event"]["message"]["content"] = json.dumps({"text": f"@_user_1 {VPN}\ud800\x00"})
    await feed(adapter, payload)
    [text] = final_text(fake_feishu)
    assert "VPN" in text
