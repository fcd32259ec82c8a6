"""Webhook mode: events encrypted and signed as Feishu does, posted over real HTTP to /feishu/events."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from adapters.feishu.adapter import FeishuAdapter
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import card_action_event, encrypt, message_event, signed_headers
from tests.fakes.feishu_support import ENCRYPT_KEY, TOKEN, VPN, settings_for, settle
from tests.helpers import Core

REPLY = r"/open-apis/im/v1/messages/[^/]+/reply"


@pytest.fixture
def fake_feishu() -> Iterator[FakeFeishu]:
    with FakeFeishu() as fake:
        yield fake


@pytest.fixture
async def served(
    fake_feishu: FakeFeishu, core: Core
) -> AsyncIterator[tuple[FeishuAdapter, httpx.AsyncClient]]:
    """The adapter's router on a real uvicorn server on an ephemeral port."""
    adapter = FeishuAdapter(settings_for(fake_feishu, mode="webhook"), core.conversation)
    app = FastAPI()
    router = adapter.router()
    assert router is not None
    app.include_router(router)
    await adapter.start()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.listen()  # early requests wait in the backlog until uvicorn accepts them
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", trust_env=False) as client:
        yield adapter, client
    server.should_exit = True
    await serving
    sock.close()
    await adapter.stop()


async def post(client: httpx.AsyncClient, payload: dict[str, Any], **sign: Any) -> httpx.Response:
    body = json.dumps(encrypt(sign.pop("key", ENCRYPT_KEY), payload)).encode()
    headers = signed_headers(sign.pop("sign_key", ENCRYPT_KEY), body)
    headers.update(sign.pop("headers", {}))
    return await client.post("/feishu/events", content=body, headers=headers)


async def test_url_verification_challenge(served: tuple[FeishuAdapter, httpx.AsyncClient]) -> None:
    _, client = served
    challenge = {"challenge": "ch-123", "token": TOKEN, "type": "url_verification"}
    body = json.dumps(encrypt(ENCRYPT_KEY, challenge)).encode()
    response = await client.post("/feishu/events", content=body)
    assert response.status_code == 200 and response.json() == {"challenge": "ch-123"}
    wrong = json.dumps(encrypt(ENCRYPT_KEY, {**challenge, "token": "nope"})).encode()
    assert (await client.post("/feishu/events", content=wrong)).status_code == 401


async def test_encrypted_signed_event_is_answered(
    served: tuple[FeishuAdapter, httpx.AsyncClient], fake_feishu: FakeFeishu
) -> None:
    adapter, client = served
    response = await post(client, message_event(VPN, message_id="om_w1", token=TOKEN))
    assert response.status_code == 200
    await settle(adapter)
    [reply] = fake_feishu.calls_to("POST", REPLY)
    assert reply.path.endswith("/om_w1/reply")
    # Feishu retries when unsure: the same event again is acknowledged and not answered twice
    again = await post(client, message_event(VPN, message_id="om_w1", token=TOKEN))
    assert again.status_code == 200
    await settle(adapter)
    assert len(fake_feishu.calls_to("POST", REPLY)) == 1


async def test_forged_requests_are_refused_and_logged(
    served: tuple[FeishuAdapter, httpx.AsyncClient],
    fake_feishu: FakeFeishu,
    caplog: pytest.LogCaptureFixture,
) -> None:
    adapter, client = served
    event = message_event(VPN, token=TOKEN)
    caplog.set_level(logging.WARNING, logger="adapters.feishu.adapter")
    forged = await post(client, event, sign_key="someone-else")
    assert forged.status_code == 401
    wrong_key = await post(client, event, key="another-key", sign_key="another-key")
    assert wrong_key.status_code == 400
    wrong_token = await post(client, message_event(VPN, token="guessed"))
    assert wrong_token.status_code == 401
    plain = await client.post("/feishu/events", json=event)
    assert plain.status_code == 400
    garbage = await client.post("/feishu/events", content=b"{not json")
    assert garbage.status_code == 400
    await settle(adapter)
    assert fake_feishu.calls_to("POST", REPLY) == []
    refusals = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(refusals) == 5
    assert "signature" in refusals[0] and "decrypted" in refusals[1]


async def test_card_click_over_the_webhook(
    served: tuple[FeishuAdapter, httpx.AsyncClient], core: Core
) -> None:
    adapter, client = served
    await post(client, message_event(VPN, message_id="om_w2", token=TOKEN))
    await settle(adapter)
    [channel] = adapter.channels
    assert channel.timings.placeholder is not None
    answer = (await core.store.history((await core.store.thread(channel._target.key)).id, 1))[0]
    value = {
        "tb": "up",
        "turn": answer.id,
        "tenant": channel._target.key.tenant,
        "chat": "oc_group1",
        "thread": "om_w2",
        "mid": "om_w2",
        "rit": False,
    }
    response = await post(client, card_action_event(value, operator="ou_fan", token=TOKEN))
    assert response.status_code == 200
    assert "Thanks" in response.json()["toast"]["content"]
    await settle(adapter)
    assert await core.store.feedback(answer.id) == {"ou_fan": ("up", "")}
