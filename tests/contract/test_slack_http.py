"""The Slack adapter in HTTP mode: Slack-signed events posted to /slack/events on teambot's app.

Requests are signed with slack_sdk's SignatureVerifier (Slack's algorithm) and go through Bolt's
own verification; the Web API calls go to the local fake over real HTTP.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from adapters.slack.adapter import SlackAdapter, SlackConfigError
from adapters.slack.config import SlackSettings
from adapters.slack.convert import HELPFUL
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    block_action,
    event_body,
    signed_headers,
    user_message,
)
from tests.fakes.slack_core import SlackCore, make_slack_core

QUESTION = "How many days of annual leave do I get?"


@pytest.fixture
async def core(tmp_path: Path, fake_sglang: FakeSGLang) -> AsyncIterator[SlackCore]:
    fake_sglang.behave(answer="Full-time staff get **25 days** a year [1].")
    built = await make_slack_core(tmp_path, fake_sglang)
    yield built
    await built.close()


def http_settings(slack: FakeSlack, **overrides: Any) -> SlackSettings:
    values: dict[str, Any] = {
        "enabled": True,
        "bot_token": BOT_TOKEN,
        "signing_secret": SIGNING_SECRET,
        "api_url": slack.api_url,
        "update_interval": 0.05,
    }
    return SlackSettings(**{**values, **overrides})


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


def finals(slack: FakeSlack) -> list[dict[str, Any]]:
    return [
        c
        for c in slack.calls_to("chat.update") + slack.calls_to("chat.postMessage")
        if c.get("blocks")
    ]


async def post_event(
    client: httpx.AsyncClient, body: dict[str, Any], **headers: str
) -> httpx.Response:
    raw = json.dumps(body)
    return await client.post(
        "/slack/events", content=raw, headers={**signed_headers(raw), **headers}
    )


async def test_signed_event_is_acked_at_once_and_answered_in_the_thread(
    slack: FakeSlack, running: tuple[SlackAdapter, httpx.AsyncClient], core: SlackCore
) -> None:
    adapter, client = running
    core.fake.behave(latency=0.5)  # the ack must not wait for the model
    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    started = time.monotonic()
    response = await post_event(client, event_body(event))
    assert response.status_code == 200 and time.monotonic() - started < 0.4
    await slack.wait_for(lambda: finals(slack))
    await adapter.drain()
    assert slack.calls_to("chat.postMessage")[0]["thread_ts"] == event["ts"]
    blocks = finals(slack)[0]["blocks"]
    assert blocks[0]["text"]["text"] == "Full-time staff get *25 days* a year [1]."
    assert blocks[1]["elements"][0]["text"] == "[1] <https://wiki.example.com/leave|Leave policy>"


async def test_retried_delivery_is_answered_once(
    slack: FakeSlack, running: tuple[SlackAdapter, httpx.AsyncClient]
) -> None:
    adapter, client = running
    body = event_body(user_message(f"<@{BOT_USER}> {QUESTION}"))
    assert (await post_event(client, body)).status_code == 200
    retried = await post_event(
        client, body, **{"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"}
    )
    assert retried.status_code == 200
    await slack.wait_for(lambda: finals(slack))
    await adapter.drain()
    assert len(slack.calls_to("chat.postMessage")) == 1


async def test_forged_stale_and_unsigned_requests_are_refused(
    slack: FakeSlack,
    running: tuple[SlackAdapter, httpx.AsyncClient],
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter, client = running
    raw = json.dumps(event_body(user_message(f"<@{BOT_USER}> {QUESTION}")))
    forged = signed_headers(raw, secret="not-the-secret")
    stale = signed_headers(raw, timestamp=int(time.time()) - 600)
    unsigned = {"content-type": "application/json"}
    with caplog.at_level(logging.WARNING, logger="adapters.slack.adapter"):
        for headers in (forged, stale, unsigned):
            response = await client.post("/slack/events", content=raw, headers=headers)
            assert response.status_code == 401
    await adapter.drain()
    assert slack.calls_to("chat.postMessage") == []
    refused = [r for r in caplog.records if "signature" in r.getMessage()]
    assert len(refused) == 3


async def test_url_verification_and_button_click(
    slack: FakeSlack, running: tuple[SlackAdapter, httpx.AsyncClient], core: SlackCore
) -> None:
    adapter, client = running
    challenge = await post_event(
        client, {"type": "url_verification", "token": "x", "challenge": "c-123"}
    )
    assert challenge.json() == {"challenge": "c-123"}

    event = user_message(f"<@{BOT_USER}> {QUESTION}")
    await post_event(client, event_body(event))
    await slack.wait_for(lambda: finals(slack))
    await adapter.drain()
    final = finals(slack)[0]
    value = final["blocks"][-1]["elements"][0]["value"]
    message = {"type": "message", "ts": final["ts"], "thread_ts": event["ts"]}
    payload = block_action(HELPFUL, value, channel="C0GENERAL", message=message)
    form = urlencode({"payload": json.dumps(payload)})
    headers = {**signed_headers(form), "content-type": "application/x-www-form-urlencoded"}
    response = await client.post("/slack/events", content=form, headers=headers)
    assert response.status_code == 200
    await adapter.drain()
    assert (await core.store.feedback(json.loads(value)["turn"]))["U0ADA"][0] == "up"
    assert adapter.status().mode == "http" and adapter.status().last_event_age is not None


async def test_http_mode_without_signing_secret_refuses_to_start(
    slack: FakeSlack, core: SlackCore
) -> None:
    adapter = SlackAdapter(http_settings(slack, signing_secret=None), core.conversation)
    with pytest.raises(SlackConfigError, match="TEAMBOT_SLACK__SIGNING_SECRET"):
        await adapter.start()
    [check] = await adapter.check()
    assert check.status == "error" and "SIGNING_SECRET" in check.detail
    assert adapter.status().connected is False


async def test_a_refused_bot_token_is_explained(slack: FakeSlack, core: SlackCore) -> None:
    adapter = SlackAdapter(http_settings(slack, bot_token="xoxb-wrong"), core.conversation)
    with pytest.raises(SlackConfigError, match=r"invalid_auth.*TEAMBOT_SLACK__BOT_TOKEN"):
        await adapter.start()
    [check] = await adapter.check()
    assert check.status == "error" and "invalid_auth" in check.detail
