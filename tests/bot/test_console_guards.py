"""The console against someone trying it on: a sign-in form posted from another site, forms sent
from elsewhere, an agent refreshing a source, names that pass for others, bidi controls in what
agents read, a question of zero-width characters, and a file name with NUL in an upload."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.console import agents_cli
from bot.console.accounts import AccountError, Accounts, Role
from bot.console.auth import COOKIE, LOGIN_COOKIE
from bot.console.present import Clock, templates
from bot.db import upgrade_async
from engine import clean
from engine.messages import ChatType, Inbound, Outcome, Sender
from engine.store.database import create_engine
from tests.bot.served import PASSWORD, make_settings, serve
from tests.fakes.sglang import FakeSGLang
from tests.helpers import sign_in

EVIL = "https://evil.example"


async def _csrf(client: httpx.AsyncClient, path: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', (await client.get(path)).text)
    assert found, path
    return found.group(1)


async def test_forms_from_other_sites_and_a_login_without_its_token_are_refused(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD, origins=["https://support.example"])
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as client:
            # login CSRF: a form posted without the page's token signs nobody in
            bare = {"name": "admin", "password": PASSWORD}
            forged = await client.post("/console/login", data=bare)
            assert forged.status_code == 403 and "expired or came from elsewhere" in forged.text
            assert COOKIE not in client.cookies
            token = client.cookies[LOGIN_COOKIE]  # the refusal hands out a fresh form
            posted = await client.post(
                "/console/login", data={**bare, "csrf": token}, headers={"origin": EVIL}
            )
            assert posted.status_code == 403 and "another site" in posted.text
            assert COOKIE not in client.cookies
            assert (await sign_in(client, "admin", PASSWORD)).status_code == 303

            csrf = await _csrf(client, "/console/escalations")
            form = {"csrf": csrf}
            for headers in ({"origin": EVIL}, {"referer": f"{EVIL}/page"}, {"origin": "null"}):
                refused = await client.post("/console/logout", data=form, headers=headers)
                assert refused.status_code == 403, headers
            assert (await client.get("/console/escalations")).status_code == 200  # still in
            for origin in ("https://support.example", url):  # [console] origins, and its own
                page = await client.post(
                    "/console/threads/999/take", data=form, headers={"origin": origin}
                )
                assert page.status_code == 303 and "no%20thread" in page.headers["location"]


async def test_only_admins_refresh_a_source(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD)
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url) as admin:
            assert (await sign_in(admin, "admin", PASSWORD)).status_code == 303
        await agents_cli.add(settings.storage.url, "lin", "an agent password", Role.AGENT)
        async with httpx.AsyncClient(base_url=url) as agent:
            assert (await sign_in(agent, "lin", "an agent password")).status_code == 303
            page = await agent.get("/console/knowledge")
            assert page.status_code == 200 and "Run now" not in page.text
            csrf = await _csrf(agent, "/console/knowledge")
            for path in (
                "/console/knowledge/sources/sample/refresh",
                "/console/sources/sample/refresh",
            ):
                refused = await agent.post(path, data={"csrf": csrf})
                assert refused.status_code == 403 and "Admins only" in refused.text, path
        async with httpx.AsyncClient(base_url=url) as admin:
            await sign_in(admin, "admin", PASSWORD)
            assert "Run now" in (await admin.get("/console/knowledge")).text
            csrf = await _csrf(admin, "/console/knowledge")
            started = await admin.post(
                "/console/knowledge/sources/sample/refresh", data={"csrf": csrf}
            )
            assert started.status_code == 303 and "notice=" in started.headers["location"]


async def test_names_that_pass_for_others_are_refused_and_case_does_not_make_a_new_one(
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'accounts.db'}"
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        accounts = Accounts(engine)
        await accounts.add("admin", "a long password", Role.ADMIN)
        for name in (
            "аdmin",
            "ad\u200bmin",
            "ad\u202emin",
            "\u2066admin",
            "Ωmega",
            "ａdmin",
            "ADMIN",
        ):
            with pytest.raises(AccountError):
                await accounts.add(name, "another long password")
        assert [a.name for a in await accounts.agents()] == ["admin"]
        # full-width letters become ASCII; Chinese names are welcome; sign-in ignores case
        assert (await accounts.add("ｍｅｉ", "mei's long password")).name == "mei"
        assert (await accounts.add("张伟", "zhang's long password")).name == "张伟"
        found = await accounts.verify("MEI", "mei's long password")
        assert found is not None and found.name == "mei"
        assert await accounts.verify("аdmin", "a long password") is None
    finally:
        await engine.dispose()


def test_what_agents_read_has_no_bidi_controls_and_invisible_questions_are_empty() -> None:
    asked = Inbound(
        "web", "local", "c", ChatType.DIRECT, "t", "m", Sender("u"), "refund \u202eevil\u202c ok"
    )
    assert asked.text == "refund evil ok"
    for invisible in ("\u200b", "\u200b\u200c\u200d\ufeff", " \u2060\u3164 \n"):
        assert clean.message(invisible) == ""
    assert clean.message("ok\u200d") == "ok\u200d"  # visible text keeps its joiners (emoji)
    # text stored before intake took them out is shown without them too
    page = templates(Clock("UTC")).from_string("<p>{{ q }}</p>{{ q|md }}")
    shown = page.render(q="pay \u202etxt.exe\u202c \u2067now\u2069")
    assert "\u202e" not in shown and "\u2067" not in shown and "txt.exe" in shown


async def test_a_question_of_zero_width_characters_is_not_answered(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with serve(make_settings(tmp_path, fake_sglang, PASSWORD), monkeypatch) as (_, fake):
        answer = await fake.ask("\u200b\u200b\u200b", uuid.uuid4().hex)
    assert answer is not None and answer.outcome is Outcome.FAILED
    assert "write your question in words" in answer.text
    assert fake_sglang.requests == []


async def test_an_upload_with_a_control_character_in_a_name_keeps_the_other_files(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings(tmp_path, fake_sglang, PASSWORD)
    knowledge = settings.knowledge.model_copy(update={"uploads_dir": str(tmp_path / "uploads")})
    settings = settings.model_copy(update={"knowledge": knowledge})
    canteen = b"# Canteen\n\nThe canteen serves lunch from 11:30 to 13:30 on weekdays.\n"
    async with serve(settings, monkeypatch) as (url, _):
        async with httpx.AsyncClient(base_url=url, timeout=120) as admin:
            await sign_in(admin, "admin", PASSWORD)
            csrf = await _csrf(admin, "/console/sources")
            # written by hand: httpx would percent-encode the NUL, a hostile client does not
            parts = [
                ("csrf", None, csrf.encode()),
                ("files", "bad\x00name.md", b"# Bad\n\nnever indexed"),
                ("files", "canteen.md", canteen),
                ("files", "cv\u202efdp.md", b"# CV\n\nnever indexed"),
            ]
            body = b"".join(
                b'--XyZ\r\nContent-Disposition: form-data; name="%s"%s\r\n\r\n%s\r\n'
                % (field.encode(), b'; filename="%s"' % name.encode() if name else b"", data)
                for field, name, data in parts
            )
            page = await admin.post(
                "/console/sources/upload",
                content=body + b"--XyZ--\r\n",
                headers={"content-type": "multipart/form-data; boundary=XyZ"},
            )
            assert page.status_code == 200, page.text[:300]
            assert page.text.count("control or invisible characters") == 2
            assert "canteen.md" in page.text and "indexed" in page.text
    engine = create_async_engine(settings.storage.url)
    async with engine.connect() as conn:
        kept = (await conn.execute(text("SELECT key FROM stored_files"))).scalars().all()
    await engine.dispose()
    assert kept == ["uploads/canteen.md"]  # in the shared file store, not on this disk
    assert not (tmp_path / "uploads").exists()
