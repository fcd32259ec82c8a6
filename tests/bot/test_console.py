"""The console's sign-in over real HTTP: no account, no console; the old shared password
bootstraps one admin; CSRF; logins throttled per client address and overall with a lockout the
person sees, also against guesses sent all at once; logout and a password change end sessions
on the server, so a copied cookie stops working."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from bot.console import agents_cli
from bot.console.accounts import Role
from bot.console.auth import COOKIE
from bot.console.throttle import LoginThrottle
from tests.bot.served import PASSWORD, make_settings, serve
from tests.fakes.sglang import FakeSGLang
from tests.helpers import sign_in


async def _login(client: httpx.AsyncClient, name: str, password: str) -> httpx.Response:
    response: httpx.Response = await sign_in(client, name, password)
    return response


async def test_no_account_no_console(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, None)
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for path in ("/console/login", "/console/escalations"):
                response = await client.get(path)
                assert response.status_code == 503
                assert "teambot agents add" in response.text
            # the first admin made from a shell opens the console, no restart
            await agents_cli.add(settings.storage.url, "mei", "a long password", Role.ADMIN)
            assert (await client.get("/console/login")).status_code == 200
            assert (await _login(client, "mei", "a long password")).status_code == 303


async def test_the_shared_password_bootstraps_one_admin_and_posts_need_csrf(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD)
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            anonymous = await client.get("/console/escalations")
            assert (
                anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]
            )
            assert (await _login(client, "anyone", PASSWORD)).status_code == 401
            signed_in = await _login(client, "admin", PASSWORD)
            assert signed_in.status_code == 303
            page = await client.get("/console/escalations")
            assert page.status_code == 200 and "admin" in page.text
            refused = await client.post("/console/threads/1/resolve", data={"csrf": "forged"})
            assert refused.status_code == 403
            agents = await client.get("/console/agents")
            assert agents.status_code == 200 and "管理员" in agents.text
    assert [a.name for a in await agents_cli.listing(settings.storage.url)] == ["admin"]


async def test_a_client_is_locked_out_after_failures_and_sees_it(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD, login_attempts_per_client=5)
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            for _ in range(5):
                assert (await _login(client, "admin", "guess")).status_code == 401
            locked = await _login(client, "admin", PASSWORD)  # right, but too late
            assert locked.status_code == 429
            assert "locked for 15 min" in locked.text and "锁定" in locked.text
            assert int(locked.headers["retry-after"]) > 800
            assert client.cookies.get(COOKIE) is None


async def test_guesses_sent_at_once_are_throttled_like_guesses_in_a_row(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD, login_attempts_per_client=5)
    async with serve(settings, monkeypatch) as (url, _):
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
            await client.get("/console/login")  # the form's token, once: the guesses share it
            guesses = await asyncio.gather(
                *(_login(client, "admin", f"guess {n}") for n in range(60))
            )
            codes = sorted(r.status_code for r in guesses)
            assert codes.count(401) == 5 and codes.count(429) == 55, codes
            assert (await _login(client, "admin", PASSWORD)).status_code == 429


def test_the_overall_limit_locks_every_client() -> None:
    throttle = LoginThrottle(per_client=100, overall=10, window=60, lockout=300)
    for n in range(10):
        assert throttle.begin(f"10.0.0.{n}") is None  # ten addresses, one guess each
    lockout = throttle.begin("10.0.0.99")
    assert lockout is not None and lockout.everyone and lockout.minutes == 5
    assert throttle.begin("192.168.1.1") is not None  # a fresh address too


def test_a_success_forgives_only_its_own_client() -> None:
    throttle = LoginThrottle(per_client=3, overall=100, window=60, lockout=60)
    for _ in range(3):
        assert throttle.begin("a") is None
    assert throttle.begin("b") is None
    throttle.succeeded("b")
    assert throttle.begin("a") is not None  # a's fourth attempt
    assert throttle.begin("b") is None


async def test_logout_and_a_password_change_end_sessions_on_the_server(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, None)
    async with serve(settings, monkeypatch) as (url, _):
        await agents_cli.add(settings.storage.url, "mei", "first password", Role.AGENT)
        async with (
            httpx.AsyncClient(base_url=url) as laptop,
            httpx.AsyncClient(base_url=url) as phone,
        ):
            assert (await _login(laptop, "mei", "first password")).status_code == 303
            copied = laptop.cookies.get(COOKIE)
            assert copied
            page = await laptop.get("/console/escalations")
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            assert (await laptop.post("/console/logout", data={"csrf": csrf})).status_code == 303
            # the copied cookie is dead on the server, not just deleted in this browser
            phone.cookies.set(COOKIE, copied, path="/console")
            reused = await phone.get("/console/escalations")
            assert reused.status_code == 303 and "/console/login" in reused.headers["location"]

            assert (await _login(laptop, "mei", "first password")).status_code == 303
            phone.cookies.clear()
            assert (await _login(phone, "mei", "first password")).status_code == 303
            page = await laptop.get("/console/password")
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            changed = await laptop.post(
                "/console/password",
                data={
                    "csrf": csrf,
                    "current": "first password",
                    "new": "second password",
                    "again": "second password",
                },
            )
            assert changed.status_code == 303 and "/console/login" in changed.headers["location"]
            assert (await phone.get("/console/escalations")).status_code == 303  # signed out
            assert (await _login(phone, "mei", "first password")).status_code == 401
            assert (await _login(phone, "mei", "second password")).status_code == 303
        # the shell ends sessions too
        assert await agents_cli.passwd(settings.storage.url, "mei", "third password") == 1


async def test_the_guards_refuse_in_order_sign_in_then_csrf_then_admins(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, None)
    async with serve(settings, monkeypatch) as (url, _):
        await agents_cli.add(settings.storage.url, "mei", "mei's long password", Role.AGENT)
        async with httpx.AsyncClient(base_url=url) as client:
            anonymous = await client.post("/console/agents", data={"csrf": "forged"})
            assert anonymous.status_code == 303
            assert anonymous.headers["location"] == "/console/login?next=/console/agents"
            assert (await _login(client, "mei", "mei's long password")).status_code == 303
            page = await client.get("/console/escalations")
            csrf = page.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
            # a form: its token first, whoever sent it; then admins only
            forged = await client.post("/console/agents", data={"csrf": "forged", "name": "zed"})
            assert forged.status_code == 403 and "CSRF" in forged.text
            agent = await client.post("/console/agents", data={"csrf": csrf, "name": "zed"})
            assert agent.status_code == 403 and "Admins only" in agent.text
            assert (await client.get("/console/agents")).status_code == 403
            # the sources pages refuse a non-admin before they read the (possibly large) form
            upload = await client.post("/console/sources/upload", data={"csrf": "forged"})
            assert upload.status_code == 403
            assert "Admins only" in upload.text and "CSRF" not in upload.text
            # an agent's own form goes through
            taken = await client.post("/console/threads/999/take", data={"csrf": csrf})
            assert taken.status_code == 303
            assert taken.headers["location"] == "/console/escalations?error=no%20thread%20999"
