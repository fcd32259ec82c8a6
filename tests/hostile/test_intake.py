"""Intake against hostile requests: teambot's whole server (uvicorn on a real socket, Slack over
HTTP, the Feishu webhook, the web chat) answers anything a sender posts with a 2xx or a 4xx,
before and after authentication, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from adapters.slack.config import SlackSettings
from bot.server import create_server
from bot.settings import (
    ConversationSettings,
    KnowledgeSettings,
    LLMSettings,
    ServerSettings,
    Settings,
    StorageSettings,
)
from tests.bot.served import running
from tests.fakes.feishu import TENANT as FEISHU_TENANT
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import card_action_event, encrypt, message_event
from tests.fakes.feishu_events import signed_headers as feishu_signed
from tests.fakes.feishu_support import ENCRYPT_KEY, TOKEN, settings_for
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import BOT_TOKEN, SIGNING_SECRET, FakeSlack, event_body, user_message
from tests.fakes.slack import signed_headers as slack_signed

MAX_BODY = 64 * 1024


@dataclass
class Served:
    client: httpx.AsyncClient
    slack: FakeSlack
    feishu: FakeFeishu


@pytest.fixture
async def served(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Served]:
    shutil.copytree(sample_index, tmp_path / "chroma")
    with FakeFeishu() as feishu:
        async with FakeSlack() as slack:
            config = Settings(
                server=ServerSettings(max_body_bytes=MAX_BODY, recovery_sweep_seconds=3600),
                storage=StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"),
                llm=LLMSettings(base_url=fake_sglang.base_url, first_token_timeout=5),
                conversation=ConversationSettings(),
                knowledge=KnowledgeSettings(persist_dir=tmp_path / "chroma", collection="test-kb"),
                slack=SlackSettings(
                    enabled=True,
                    mode="http",
                    bot_token=SecretStr(BOT_TOKEN),
                    signing_secret=SecretStr(SIGNING_SECRET),
                    api_url=slack.api_url,
                ),
                feishu=settings_for(feishu, mode="webhook"),
            )
            async with (
                running(create_server(config)) as base,
                httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client,
            ):
                yield Served(client, slack, feishu)


def feishu_request(payload: Any, *, timestamp: str | None = None) -> tuple[bytes, dict[str, str]]:
    """Encrypted with the app's key and signed, as Feishu sends it."""
    body = json.dumps(encrypt(ENCRYPT_KEY, payload)).encode()
    return body, feishu_signed(ENCRYPT_KEY, body, timestamp)


bodies = st.binary(max_size=300) | st.text(max_size=200).map(
    lambda s: s.encode("utf-8", "surrogatepass")
)
json_like = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)
header_text = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    path=st.sampled_from(["/slack/events", "/feishu/events", "/api/chat", "/api/feedback"]),
    body=bodies,
    kind=st.sampled_from(
        ["application/json", "application/x-www-form-urlencoded", "text/plain", "", "a/b;;"]
    ),
    stamp=header_text,
    signed=st.booleans(),
)
async def test_any_bytes_get_a_4xx_never_a_5xx(
    served: Served, path: str, body: bytes, kind: str, stamp: str, signed: bool
) -> None:
    headers = {"content-type": kind, "x-slack-request-timestamp": stamp}
    if signed and path == "/slack/events":
        text = body.decode("utf-8", "replace")
        body = text.encode()
        headers = {**slack_signed(text), "content-type": kind or "application/json"}
    response = await served.client.post(path, content=body, headers=headers)
    assert response.status_code < 500, (path, body[:80], response.text[:200])


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(event=json_like, payload=json_like, field=st.sampled_from(["event", "header", "type"]))
async def test_any_authenticated_payload_gets_a_4xx_never_a_5xx(
    served: Served, event: Any, payload: Any, field: str
) -> None:
    """Signed with the real secret, so the request passes authentication: its content is hostile."""
    slack_body = json.dumps({**event_body(user_message("hi")), "event": event})
    response = await served.client.post(
        "/slack/events", content=slack_body, headers=slack_signed(slack_body)
    )
    assert response.status_code < 500, response.text[:200]
    message = message_event("How do I reset the VPN?", token=TOKEN)
    message[field] = payload
    body, headers = feishu_request(message)
    response = await served.client.post("/feishu/events", content=body, headers=headers)
    assert response.status_code < 500, response.text[:200]


async def test_the_requests_that_once_got_500(served: Served) -> None:
    client = served.client
    stale = slack_signed("{}")
    for headers, body in (
        ({**stale, "x-slack-request-timestamp": "soon"}, b"{}"),
        ({**stale, "x-slack-request-timestamp": "1e20"}, b"{}"),
        (slack_signed("[1, 2]"), b"[1, 2]"),
        ({**slack_signed("x"), "content-type": "application/json"}, b"\xff\xfe\x00{"),
    ):
        response = await client.post("/slack/events", content=body, headers=headers)
        assert response.status_code == 400, (body, response.text)

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: chunked transfer
        for _ in range(160):
            yield b"x" * 65536  # 10 MB

    response = await client.post(
        "/slack/events", content=chunks(), headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    # a lone surrogate and a NUL through the web chat API: an answer, never internals
    for text in ('"\\ud800 VPN?"', '"\\u0000"'):
        raw = f'{{"chat_id": "c1", "thread_id": "t{len(text)}", "message_id": "m{len(text)}", "text": {text}}}'
        response = await client.post(
            "/api/chat", content=raw, headers={"content-type": "application/json"}
        )
        # a lone surrogate is not valid JSON text to pydantic: 422, a NUL is answered
        assert response.status_code == (422 if "ud800" in text else 200), response.text
        assert response.status_code == 422 or '"final"' in response.text
        assert "sqlalche" not in response.text and "Traceback" not in response.text


async def test_feishu_replays_and_events_it_does_not_handle(served: Served) -> None:
    client = served.client
    day_old = str(int(time.time()) - 86_400)
    body, headers = feishu_request(
        message_event("How do I reset the VPN?", token=TOKEN), timestamp=day_old
    )
    assert (await client.post("/feishu/events", content=body, headers=headers)).status_code == 401
    unhandled = message_event("x", token=TOKEN)
    unhandled["header"]["event_type"] = "im.chat.member.bot.added_v1"
    body, headers = feishu_request(unhandled)
    response = await client.post("/feishu/events", content=body, headers=headers)
    assert response.status_code == 200
    # a captured "转人工" click replayed three times escalates once. The click is under an answer,
    # so its thread has a question (on a thread without one it escalates nothing: NothingAsked)
    body, headers = feishu_request(
        message_event("How do I reset the VPN?", message_id="om_x", token=TOKEN)
    )
    assert (await client.post("/feishu/events", content=body, headers=headers)).status_code == 200
    for _ in range(300):  # answered: the final card is in place (the turn is stored before it)
        final = served.feishu.calls_to("PUT", r"/open-apis/cardkit/v1/cards/[^/]+$")
        if final or served.feishu.calls_to("PATCH", r"/open-apis/im/v1/messages/[^/]+"):
            break
        await asyncio.sleep(0.1)
    value = {
        "tb": "human",
        "turn": 1,
        "tenant": FEISHU_TENANT,
        "chat": "oc_group1",
        "thread": "om_x",
        "mid": "om_x",
        "rit": False,
    }
    body, headers = feishu_request(card_action_event(value, token=TOKEN))
    for _ in range(3):
        response = await client.post("/feishu/events", content=body, headers=headers)
        assert response.status_code == 200
    await asyncio.sleep(1.5)
    notices = [
        c
        for c in served.feishu.calls_to("POST", r"/open-apis/im/v1/messages")
        if c.body.get("receive_id") == "oc_helpdesk"
    ]
    assert len(notices) == 1
