"""DingTalk attachments: a picture's downloadCode is exchanged for a temporary URL through the
robot message-file API of the fake DingTalk, the URL's host checked, the bytes read; refusals
reach the asker in words."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import select

from engine.store.tables import Turn
from tests.contract.test_dingtalk import running, settle
from tests.fakes.dingtalk import FakeDingTalk, bot_message
from tests.helpers import Core


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    async with FakeDingTalk() as server:
        yield server


SHOT = (Path(__file__).parent.parent / "screenshots" / "error_dialog.png").read_bytes()
DOWNLOAD = "/v1.0/robot/messageFiles/download"


async def only_answer(core: Core, message: dict[str, object]) -> str:
    """The stored answer to `message` (its thread is the adapter's window: found by message)."""
    async with core.store.engine.connect() as conn:
        query = select(Turn.answer).where(Turn.message_id == str(message["msgId"]))
        answer = await conn.scalar(query)
    assert answer is not None, "the message was not answered"
    return str(answer)


def picture(code: str, group: bool = False) -> dict[str, object]:
    content = {"downloadCode": code, "pictureDownloadCode": code}
    return bot_message(group=group, msgtype="picture", content=content)


async def test_a_picture_is_downloaded_through_the_robot_file_api_and_read(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.files["dc-shot"] = SHOT
    message = picture("dc-shot")
    async with running(fake, core) as adapter:
        await settle(fake, adapter, await fake.push(message))
    [exchange] = fake.sent(DOWNLOAD)
    assert exchange.body == {"downloadCode": "dc-shot", "robotCode": fake.client_id}
    assert [c.path for c in fake.calls if c.path.startswith("/oss/")]
    answer = await only_answer(core, message)
    assert "TX-7781" in answer and answer.startswith("截图 image-1 中的文字：")


async def test_a_download_url_on_a_foreign_host_is_not_fetched(
    fake: FakeDingTalk, core: Core
) -> None:
    fake.files["dc-shot"] = SHOT
    fake.behave(foreign_download=True)
    message = picture("dc-shot")
    async with running(fake, core) as adapter:
        await settle(fake, adapter, await fake.push(message))
    assert not [c for c in fake.calls if c.path.startswith("/oss/")]
    answer = await only_answer(core, message)
    assert "unexpected host (files.example.net)" in answer


async def test_an_expired_code_and_a_missing_permission_are_said_in_words(
    fake: FakeDingTalk, core: Core
) -> None:
    expired = picture("dc-old")
    async with running(fake, core) as adapter:
        await settle(fake, adapter, await fake.push(expired))
    assert "invalid or expired" in await only_answer(core, expired)
    fake.behave(refuse_download=403)
    refused = bot_message(
        group=False, sender="staff-bo", msgtype="picture", content={"downloadCode": "dc-x"}
    )
    async with running(fake, core) as adapter:
        await settle(fake, adapter, await fake.push(refused))
    assert "enterprise-certified" in await only_answer(core, refused)
