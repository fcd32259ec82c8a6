"""The agents' console in real headless Chromium (Debian's `chromium`, driven by Playwright):
login, an escalated thread listed, take, reply into the thread, resolve, approve the FAQ
candidate, and the next asker answered from it. Plus the closed-without-password and CSRF
checks over plain HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from pydantic import SecretStr

from adapters.base import AdapterStatus, Check, Core
from adapters.web.adapter import WebAdapter
from bot import server as server_module
from bot.console.auth import COOKIE, Signer
from bot.console.config import ConsoleSettings
from bot.server import create_server
from bot.settings import Settings
from engine.config import ConversationSettings, LLMSettings, StorageSettings
from engine.messages import Answer, ChatType, EscalationNotice, Inbound, Sender, ThreadKey
from engine.ports import ChannelLimits, ReplyChannel
from knowledge import KnowledgeSettings
from tests.fakes.sglang import FakeSGLang

CHROMIUM = os.environ.get("TEAMBOT_TEST_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
PASSWORD = "correct horse battery staple"


class FakeChannel:
    """Posts into a thread of the fake platform: what the console's replies reach."""

    def __init__(self, adapter: FakeChatAdapter, key: ThreadKey) -> None:
        self._adapter, self._key = adapter, key

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits()

    async def open(self) -> None: ...

    async def update(self, text: str) -> None: ...

    async def finish(self, answer: Answer) -> None:
        self._adapter.thread(self._key).append(answer.text)

    async def post_escalation(self, notice: EscalationNotice) -> None:
        self._adapter.escalations.append(notice)


class FakeChatAdapter:
    """A platform that can post unprompted; its threads are lists of message texts."""

    name = "fakechat"

    def __init__(self, core: Core) -> None:
        self.core = core
        self.threads: dict[ThreadKey, list[str]] = {}
        self.escalations: list[EscalationNotice] = []

    def thread(self, key: ThreadKey) -> list[str]:
        return self.threads.setdefault(key, [])

    async def ask(self, text: str, thread: str) -> Answer | None:
        message = Inbound(
            "fakechat", "T1", "support", ChatType.GROUP, thread, uuid.uuid4().hex,
            Sender("u-ada", "Ada"), text,
        )  # fmt: skip
        self.thread(message.thread_key).append(text)
        return await self.core.handle(message, FakeChannel(self, message.thread_key))

    def router(self) -> None:
        return None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def reply_channel(self, key: ThreadKey) -> ReplyChannel | None:
        return FakeChannel(self, key)

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=None, mode="fake")

    async def check(self) -> list[Check]:
        return []


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _settings(tmp_path: Path, fake: FakeSGLang, password: str | None) -> Settings:
    data = tmp_path / "data"
    return Settings(
        storage=StorageSettings(url=f"sqlite+aiosqlite:///{data / 'teambot.db'}"),
        llm=LLMSettings(base_url=fake.base_url, first_token_timeout=5, idle_timeout=2),
        conversation=ConversationSettings(update_interval=0.05),
        knowledge=KnowledgeSettings(persist_dir=data / "chroma"),
        console=ConsoleSettings(
            password=SecretStr(password) if password else None, faq_dir=str(data / "faq")
        ),
    )


@pytest.fixture
async def served(
    tmp_path: Path, fake_sglang: FakeSGLang, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, FakeChatAdapter, Settings]]:
    """teambot's server in this process (uvicorn, ephemeral port) with the fake platform."""
    made: list[FakeChatAdapter] = []

    def adapters(settings: Settings, core: Core) -> list[Any]:
        made.append(FakeChatAdapter(core))
        return [WebAdapter(core), made[0]]

    monkeypatch.setattr(server_module, "build_adapters", adapters)
    settings = _settings(tmp_path, fake_sglang, PASSWORD)
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_server(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(1200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.1)
    if not server.started:
        await task  # raises what stopped it
        pytest.fail("the server did not start within 120 s")
    try:
        yield f"http://127.0.0.1:{port}", made[0], settings
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


async def test_console_is_closed_without_a_password(
    tmp_path: Path, fake_sglang: FakeSGLang
) -> None:
    app = create_server(_settings(tmp_path, fake_sglang, None))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        for path in ("/console/login", "/console/escalations"):
            response = await client.get(path)
            assert response.status_code == 503
            assert "TEAMBOT_CONSOLE__PASSWORD" in response.text


async def test_console_refuses_posts_without_the_csrf_token(
    tmp_path: Path, fake_sglang: FakeSGLang
) -> None:
    app = create_server(_settings(tmp_path, fake_sglang, PASSWORD))
    signer = Signer(PASSWORD)
    cookie, session = signer.issue("mei", 1)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://console") as client:
        anonymous = await client.get("/console/escalations")
        assert anonymous.status_code == 303 and "/console/login" in anonymous.headers["location"]
        client.cookies.set(COOKIE, cookie, path="/console")
        refused = await client.post("/console/threads/1/resolve", data={"csrf": "forged"})
        assert refused.status_code == 403
        forged = Signer("another password").issue("mei", 1)[0]
        client.cookies.set(COOKIE, forged, path="/console")
        assert (await client.get("/console/escalations")).status_code == 303
        wrong = await client.post("/console/login", data={"name": "mei", "password": "nope"})
        assert wrong.status_code == 401
    assert signer.csrf_ok(session, signer.csrf(session))


def _browser_or_skip() -> Any:
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian)")
    return async_playwright


async def test_console_in_chromium_take_reply_resolve_learn(
    served: tuple[str, FakeChatAdapter, Settings],
) -> None:
    async_playwright = _browser_or_skip()
    url, platform, settings = served
    question = "How do I get a parking permit for the Pudong office?"
    first = await platform.ask(question, thread="th-parking")
    assert first is not None
    handed = await platform.ask("转人工", thread="th-parking")
    assert handed is not None and handed.outcome == "handed_off"
    assert platform.escalations and platform.escalations[-1].question == question
    key = ThreadKey("fakechat", "T1", "support", "th-parking")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{url}/console")
            assert "/console/login" in page.url
            await page.fill("#name", "Mei")
            await page.fill("#password", PASSWORD)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/escalations")

            row = page.locator("#waiting tr[data-thread]", has_text=question)
            await row.wait_for()
            assert "fakechat" in await row.inner_text()
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            shot = ARTIFACTS / "escalations.png"
            await page.screenshot(path=str(shot), full_page=True)
            print(f"\nscreenshot of the Escalations page: {shot}")

            await row.get_by_role("button", name="接手 Take").click()
            taken = page.locator("#taken tr[data-thread]", has_text=question)
            await taken.wait_for()
            assert "Mei" in await taken.inner_text()

            answer = "Ask facilities at desk B2 with your badge; the permit takes one working day."
            await taken.locator("textarea").fill(answer)
            await taken.get_by_role("button", name="发送 Send").click()
            await page.locator(".notice", has_text="Sent").wait_for()
            assert platform.thread(key)[-1] == answer  # the reply reached the thread

            await taken.get_by_role("button", name="解决 Resolve").click()
            await page.locator("#resolved tr[data-thread]", has_text=question).wait_for()
            assert await page.locator("#waiting tr[data-thread]", has_text=question).count() == 0

            await page.get_by_role("link", name="知识 Knowledge").click()
            candidate = page.locator("[data-candidate]", has_text=question)
            await candidate.wait_for()
            assert answer in await candidate.locator("textarea").input_value()
            await candidate.get_by_role("button", name="批准 Approve").click()
            await page.locator(".notice", has_text="Approved and indexed").wait_for(timeout=60_000)

            await page.get_by_role("link", name="数据 Dashboard").click()
            figures = {
                name: await page.locator(f"[data-figure={name}]").first.inner_text()
                for name in ("escalation_rate", "first_response", "resolution", "bot_share")
            }
            await page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            print(f"figures from this run (last 24 h): {figures}")
            assert figures["escalation_rate"] == "100.0%"
            assert figures["first_response"] != "—" and figures["resolution"] != "—"

            await page.goto(f"{url}/console/conversations?q=parking")
            await page.get_by_role("link", name=str(key)).click()
            await page.locator(".turn", has_text=answer).wait_for()  # the agent's words
            assert "asked_for_human" in await page.inner_text("main")
        finally:
            await browser.close()

    faq = Path(settings.console.faq_dir) / "handoff-faq.csv"
    assert answer in faq.read_text(encoding="utf-8")
    # the learning loop closed: the next asker is answered from the person's answer, cited
    again = await platform.ask(question, thread="th-parking-2")
    assert again is not None
    assert any(c.source == "handoff-faq" for c in again.citations), again.citations
    async with httpx.AsyncClient() as client:
        scraped = (await client.get(f"{url}/metrics")).text
    assert "teambot_escalation_rate" in scraped
    assert "teambot_handoff_first_response_seconds_count" in scraped
    with contextlib.suppress(Exception):
        print("metrics:", [ln for ln in scraped.splitlines() if ln.startswith("teambot_resolved")])
