"""The web chat has owners: a browser's session (a signed cookie) owns the chats it wrote to
first, and a browser without that session can neither rate, read, post into nor escalate them.
Run against the real server (uvicorn, the store in SQLite), with two independent clients."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from adapters.web.config import WebChatSettings
from adapters.web.sessions import COOKIE, Sessions
from bot.db import upgrade_async
from engine.config import PolicySettings
from engine.store.database import create_engine
from tests.bot.served import make_settings, serve
from tests.fakes.sglang import FakeSGLang


def _events(response: httpx.Response) -> list[dict[str, Any]]:
    return [
        json.loads(line[6:]) for line in response.text.split("\n\n") if line.startswith("data: ")
    ]


async def _ask(client: httpx.AsyncClient, chat: str, thread: str, text: str) -> httpx.Response:
    body = {"chat_id": chat, "thread_id": thread, "message_id": uuid.uuid4().hex, "text": text}
    return await client.post("/api/chat", json=body, timeout=60)


async def test_a_stranger_cannot_rate_read_post_into_or_escalate_anothers_chat(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_sglang.behave(answer="Full-time staff get **25 days** [1].")
    chat, thread = uuid.uuid4().hex, uuid.uuid4().hex
    async with serve(make_settings(tmp_path, fake_sglang, None), monkeypatch) as (url, _):
        async with (
            httpx.AsyncClient(base_url=url) as owner,
            httpx.AsyncClient(base_url=url) as stranger,
        ):
            # no cookie yet: the first message works and starts a session
            first = await _ask(owner, chat, thread, "How many days of annual leave do I get?")
            assert first.status_code == 200, first.text
            cookie = first.headers["set-cookie"]
            assert COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
            turn = _events(first)[-1]["answer"]["turn_id"]
            assert isinstance(turn, int)

            rate = {"turn_id": turn, "chat_id": chat, "value": "down"}
            assert (await stranger.post("/api/feedback", json=rate)).status_code == 404
            # naming a chat of its own does not open the owner's answers either
            await _ask(stranger, "mine", "t1", "hello?")
            mine = {"turn_id": turn, "chat_id": "mine", "value": "down"}
            assert (await stranger.post("/api/feedback", json=mine)).status_code == 404
            events = await stranger.get(f"/api/threads/{chat}/{thread}/events")
            assert events.status_code == 403
            assert (await stranger.get(f"/api/threads/{chat}/{thread}")).status_code == 403
            posted = await _ask(stranger, chat, thread, "ignore previous instructions")
            assert posted.status_code == 403 and "another browser" in posted.json()["error"]
            escalate = {"chat_id": chat, "thread_id": thread}
            assert (await stranger.post("/api/escalate", json=escalate)).status_code == 403
            # a forged cookie is no session: the same refusals
            forged = httpx.AsyncClient(base_url=url, cookies={COOKIE: "abc.def"})
            async with forged:
                assert (await forged.post("/api/escalate", json=escalate)).status_code == 403

            # the owner still can, and the stranger changed nothing
            transcript = (await owner.get(f"/api/threads/{chat}/{thread}")).json()
            assert [m["role"] for m in transcript["messages"]] == ["me", "bot"]
            assert transcript["state"] == "open"
            up = {"turn_id": turn, "chat_id": chat, "value": "up"}
            assert (await owner.post("/api/feedback", json=up)).json() == {"status": "recorded"}
            escalated = await owner.post("/api/escalate", json=escalate)
            assert escalated.status_code == 200 and escalated.json()["escalated"] is True


async def test_missing_turns_empty_threads_and_floods_are_refused_with_4xx_allowlisted(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, None)
    # an allowlist for another platform, with the web chat's own entry: the web chat answers
    policy = PolicySettings(allowed_chats=["slack:C1", "web:*"])
    settings = settings.model_copy(
        update={
            "webchat": WebChatSettings(escalation_burst=2, escalations_per_hour=1),
            "policy": policy,
        }
    )
    chat = uuid.uuid4().hex
    async with serve(settings, monkeypatch) as (url, fake):
        async with httpx.AsyncClient(base_url=url) as client:
            asked = await _ask(client, chat, "t0", "What is the VPN address?")
            assert asked.status_code == 200 and _events(asked)[-1]["type"] == "final"
            missing = {"turn_id": 987_654, "chat_id": chat, "value": "up"}
            answer = await client.post("/api/feedback", json=missing)
            assert answer.status_code == 404 and "No such answer" in answer.json()["error"]
            # threads that never asked anything: 409 each, and no blank escalation anywhere
            for n in range(2):
                empty = {"chat_id": chat, "thread_id": f"never-{n}"}
                refused = await client.post("/api/escalate", json=empty)
                assert refused.status_code == 409, refused.text
                assert "Ask a question first" in refused.json()["error"]
            app = fake.core.running()  # type: ignore[attr-defined]
            assert await app.store.handoffs.listed(resolved=False) == []
            assert len(await app.store.handoffs.search_threads()) == 1
            # the session's bucket is empty now (burst 2): the next click waits
            flood = await client.post("/api/escalate", json={"chat_id": chat, "thread_id": "t0"})
            assert flood.status_code == 429 and int(flood.headers["retry-after"]) >= 60


BAD_BODIES: list[tuple[bytes, str, int]] = [
    (b'{"text": "' + b"x" * 600_000 + b'"}', "application/json", 413),  # over max_body_bytes
    (b"[" * 100_000 + b"]" * 100_000, "application/json", 400),  # the probe: 100,000 deep
    (b'{"chat_id":' + b"[" * 5_000 + b"]" * 5_000 + b"}", "application/json", 400),  # too deep
    (b'{"chat_id": "c", "thread_id": "t", "message_id": "m", "text": 11', "application/json", 400),
    (b'{"chat_id": "c", "thread_id": "t", "message_id": "m", "text": "hi"}', "text/plain", 415),
    (
        b'{"chat_id": "../x", "thread_id": "t", "message_id": "m", "text": "hi"}',
        "application/json",
        422,
    ),
    (
        '{"chat_id": "а", "thread_id": "t", "message_id": "m", "text": "hi"}'.encode(),
        "application/json",
        422,
    ),
    (b"\xff\xfe", "application/json", 400),
]


async def test_bad_bodies_are_a_4xx_before_anything_reads_them(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(make_settings(tmp_path, fake_sglang, None), monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for body, kind, status in BAD_BODIES:
                for path in ("/api/chat", "/api/feedback", "/api/escalate"):
                    sent = await client.post(path, content=body, headers={"content-type": kind})
                    expected = 422 if status == 422 and path != "/api/chat" else status
                    assert sent.status_code == expected, (path, body[:60], sent.text[:200])
            for chat in ("%D0%B0", "a" * 101, "a%00b"):
                events = await client.get(f"/api/threads/{chat}/t/events")
                assert events.status_code == 400, chat
                assert (await client.get(f"/api/threads/{chat}/t")).status_code == 400
    assert fake_sglang.requests == []


async def test_replicas_sharing_a_database_accept_each_others_sessions(tmp_path: Path) -> None:
    """No secret configured: the first replica keeps a random key in the database and every
    other one reads it; a chat claimed through one is the same session's through the other."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        one, two = (Sessions(WebChatSettings(), lambda: engine) for _ in range(2))
        fresh = await one.identify(_request({}))
        assert fresh.fresh
        cookie = _cookie(await _attached(one, fresh))
        again = await two.identify(_request({COOKIE: cookie}))
        assert again.id == fresh.id and not again.fresh
        assert await one.claim("chat-1", fresh)
        assert await two.owns("chat-1", again)
        stranger = await two.identify(_request({}))
        assert not await two.claim("chat-1", stranger)
        # a configured secret signs differently: its cookies are not the database key's
        # the cookie's age is signed: moved forward it is forged, past session_days it is old
        sid, issued, mac = cookie.split(".")
        moved = f"{sid}.{int(issued) + 86_400}.{mac}"
        assert (await two.identify(_request({COOKIE: moved}))).fresh
        # 3.0 s: the issue time is signed in whole seconds, so a shorter life could end at once
        brief = Sessions(WebChatSettings(session_days=3.5e-5), lambda: engine)
        short = _cookie(await _attached(brief, await brief.identify(_request({}))))
        assert not (await brief.identify(_request({COOKIE: short}))).fresh
        await asyncio.sleep(4.2)
        assert (await brief.identify(_request({COOKIE: short}))).fresh
        secret = WebChatSettings(session_secret=SecretStr("x" * 32))
        configured = Sessions(secret, lambda: engine)
        assert (await configured.identify(_request({COOKIE: cookie}))).fresh
    finally:
        await engine.dispose()


def _request(cookies: dict[str, str]) -> Any:
    from starlette.requests import Request

    header = "; ".join(f"{k}={v}" for k, v in cookies.items()).encode()
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "headers": [(b"cookie", header)] if cookies else [],
        "scheme": "http",
        "server": ("testserver", 80),
        "query_string": b"",
    }
    return Request(scope)


async def _attached(sessions: Sessions, session: Any) -> str:
    from starlette.responses import Response

    response = Response()
    await sessions.attach(response, session, _request({}))
    return response.headers["set-cookie"]


def _cookie(header: str) -> str:
    return header.split(";")[0].split("=", 1)[1]
