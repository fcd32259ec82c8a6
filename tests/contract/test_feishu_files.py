"""Feishu attachments: an image in a rich-text (`post`) message and a lone image in a direct
chat are downloaded through lark-oapi's message-resource call from the fake Open API and read;
the platform's refusal codes reach the asker in words."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.feishu.adapter import FeishuAdapter
from engine.messages import ThreadKey
from tests.fakes.feishu import TENANT, FakeFeishu
from tests.fakes.feishu_events import message_event
from tests.fakes.feishu_support import settings_for
from tests.helpers import Core

SHOT = (Path(__file__).parent.parent / "screenshots" / "error_dialog.png").read_bytes()
RESOURCE = r"/open-apis/im/v1/messages/[^/]+/resources/[^/]+"


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


async def feed(adapter: FeishuAdapter, payload: dict[str, object]) -> None:
    """As the long connection feeds an event, then wait for the answer however long reading
    takes (feishu_support.feed cancels after 10 s: OCR on a busy CI machine can take longer)."""
    await asyncio.to_thread(adapter.dispatcher._do_without_validation, json.dumps(payload).encode())
    await asyncio.sleep(0)
    await adapter.drain()


def post_with_image(question: str, image_key: str) -> dict[str, object]:
    return {
        "title": "",
        "content": [
            [{"tag": "at", "user_id": "@_user_1"}, {"tag": "text", "text": f" {question}"}],
            [{"tag": "img", "image_key": image_key, "width": 1280, "height": 800}],
        ],
    }


async def answer_of(core: Core, chat: str, thread: str, chat_type: str = "group") -> str:
    key = ThreadKey("feishu", TENANT, chat, thread)
    record = await core.store.thread(key)
    [turn] = await core.store.history(record.id, 5)
    return turn.answer


async def test_an_image_in_a_post_is_downloaded_and_read(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    fake_feishu.add_resource("om_shot", "img_v3_shot", SHOT, "image")
    content = post_with_image("这个报错怎么解决？", "img_v3_shot")
    await feed(adapter, message_event(message_id="om_shot", message_type="post", content=content))

    [call] = fake_feishu.calls_to("GET", RESOURCE)
    assert call.path == "/open-apis/im/v1/messages/om_shot/resources/img_v3_shot"
    assert call.query == {"type": "image"}
    answer = await answer_of(core, "oc_group1", "om_shot")
    assert answer.startswith("截图 image-1 中的文字：")
    assert "TX-7781" in answer
    assert "TX-7781" in core.fake.requests[-1]["messages"][-1]["content"]


async def test_a_lone_image_in_a_direct_chat_is_answered(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    fake_feishu.add_resource("om_dm", "img_v3_dm", SHOT, "image")
    event = message_event(
        message_id="om_dm", chat_id="oc_dm", chat_type="p2p", mention_bot=False,
        message_type="image", content={"image_key": "img_v3_dm"},
    )  # fmt: skip
    await feed(adapter, event)
    answer = await answer_of(core, "oc_dm", "om_dm")
    assert "TX-7781" in answer and "只能读取文字" not in answer


async def test_a_refused_download_is_named_and_the_question_still_answered(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    # no such resource: Feishu answers code 234003
    content = post_with_image("How do I reset my VPN password?", "img_gone")
    await feed(adapter, message_event(message_id="om_gone", message_type="post", content=content))
    answer = await answer_of(core, "oc_group1", "om_gone")
    assert answer.startswith("⚠️ I could not read image-1: the download failed")
    assert "the file is not part of this message" in answer
    assert "VPN" in answer.split("\n\n", 1)[1]


async def test_a_missing_scope_says_which_scope_to_grant(
    adapter: FeishuAdapter, fake_feishu: FakeFeishu, core: Core
) -> None:
    fake_feishu.add_resource("om_scope", "img_s", SHOT, "image")
    fake_feishu.fail("GET", RESOURCE, code=99991672)
    content = post_with_image("How do I reset my VPN password?", "img_s")
    await feed(adapter, message_event(message_id="om_scope", message_type="post", content=content))
    answer = await answer_of(core, "oc_group1", "om_scope")
    assert "im:resource" in answer
