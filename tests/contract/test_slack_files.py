"""Slack attachments: an app_mention carries no files, so the adapter reads the message back
(conversations.history / .replies) and downloads each file's url_private with the bot token
from the fake Slack; redirects keep the token on Slack's own host only."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from adapters.download import download
from adapters.slack.adapter import SlackAdapter
from engine.messages import DownloadError
from tests.contract.test_slack_http import finals, http_settings, post_event
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import BOT_TOKEN, BOT_USER, FakeSlack, event_body, user_message
from tests.fakes.slack_core import SlackCore, make_slack_core

SHOT = (Path(__file__).parent.parent / "screenshots" / "error_dialog.png").read_bytes()


@pytest.fixture
async def core(tmp_path: Path, fake_sglang: FakeSGLang) -> AsyncIterator[SlackCore]:
    built = await make_slack_core(tmp_path, fake_sglang)
    yield built
    await built.close()


@pytest.fixture
async def running(
    slack: FakeSlack, core: SlackCore
) -> AsyncIterator[tuple[SlackAdapter, httpx.AsyncClient]]:
    adapter = SlackAdapter(http_settings(slack), core.conversation)
    server = FastAPI()
    router = adapter.router()
    assert router is not None
    server.include_router(router)
    await adapter.start()
    transport = httpx.ASGITransport(app=server)
    async with httpx.AsyncClient(transport=transport, base_url="http://teambot") as client:
        yield adapter, client
    await adapter.stop()


def final_text(slack: FakeSlack) -> str:
    return str(finals(slack)[-1]["text"])


async def test_a_mention_with_a_screenshot_is_read_from_the_message_files(
    slack: FakeSlack, running: tuple[SlackAdapter, httpx.AsyncClient], core: SlackCore
) -> None:
    adapter, client = running
    file = slack.add_file("shot.png", SHOT)
    event = user_message(f"<@{BOT_USER}> how do I fix this?")
    slack.add_message(event["channel"], {**event, "type": "message", "files": [file]})
    assert (await post_event(client, event_body(event))).status_code == 200
    await slack.wait_for(lambda: finals(slack), within=60)
    await adapter.drain()
    [history] = slack.calls_to("conversations.history")
    assert history["latest"] == event["ts"] and history["inclusive"] in ("true", "1", True)
    assert slack.file_requests == [
        (file["url_private"].split("/files-pri/")[1], f"Bearer {BOT_TOKEN}")
    ]
    assert final_text(slack).startswith("In the image shot.png I read:")
    assert "TX-7781" in core.fake.requests[-1]["messages"][-1]["content"]


async def test_a_file_gone_from_slack_is_named_and_the_question_answered(
    slack: FakeSlack, running: tuple[SlackAdapter, httpx.AsyncClient]
) -> None:
    adapter, client = running
    file: dict[str, Any] = {**slack.add_file("notes.pdf", b"%PDF-1.4"), "name": "notes.pdf"}
    file["url_private"] = file["url_private_download"] = file["url_private"] + "-gone"
    event = user_message(f"<@{BOT_USER}> what does it say?", kind="app_mention")
    slack.add_message(event["channel"], {**event, "files": [file]})
    await post_event(client, event_body(event))
    await slack.wait_for(lambda: finals(slack), within=60)
    await adapter.drain()
    assert "I could not read notes.pdf: the download failed (the file is gone" in final_text(slack)


async def test_redirects_keep_the_token_on_the_same_host_only(slack: FakeSlack) -> None:
    file = slack.add_file("shot.png", SHOT)
    path = file["url_private"].split("/files-pri/")[1]
    moved = f"http://{slack.host}:{slack.port}/files-moved/{path}"
    headers = {"Authorization": f"Bearer {BOT_TOKEN}"}
    async with httpx.AsyncClient() as http:
        assert await download(http, moved, len(SHOT), headers=headers) == SHOT
        with pytest.raises(DownloadError, match="refused the download \\(HTTP 403\\)"):
            await download(http, moved + "?away=1", len(SHOT), headers=headers)
        with pytest.raises(DownloadError, match=f"larger than {len(SHOT) - 1} bytes"):
            await download(http, moved, len(SHOT) - 1, headers=headers)
    assert slack.file_requests[-2][1] == ""  # the token did not follow the redirect away
