"""teambot's server in this process for the console and web chat tests: uvicorn on a free
loopback port, the web chat, and a fake chat platform whose threads the console can post into."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import SecretStr

from adapters.base import AdapterStatus, Check, Core
from bot.console.config import ConsoleSettings
from bot.runtime import Runtime
from bot.server import create_server
from bot.settings import Settings
from engine.config import ConversationSettings, LLMSettings, StorageSettings
from engine.messages import Answer, ChatType, EscalationNotice, Inbound, Sender, ThreadKey
from engine.ports import ChannelLimits, ReplyChannel
from knowledge import KnowledgeSettings
from tests.fakes.sglang import FakeSGLang

PASSWORD = "correct horse battery staple"


class FakeChannel:
    """Posts into a thread of the fake platform: what the console's replies reach."""

    def __init__(self, adapter: FakeChatAdapter, key: ThreadKey) -> None:
        self._adapter, self._key = adapter, key

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits()

    async def open(self, language: str = "en") -> None: ...

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

    def reply_channel(self, key: ThreadKey, chat_type: object = None) -> ReplyChannel | None:
        return FakeChannel(self, key)

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=None, mode="fake")

    async def check(self) -> list[Check]:
        return []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_settings(
    tmp_path: Path, fake: FakeSGLang, password: str | None, **console: Any
) -> Settings:
    data = tmp_path / "data"
    return Settings(
        storage=StorageSettings(url=f"sqlite+aiosqlite:///{data / 'teambot.db'}"),
        llm=LLMSettings(base_url=fake.base_url, first_token_timeout=15, idle_timeout=5),
        conversation=ConversationSettings(),
        knowledge=KnowledgeSettings(persist_dir=data / "chroma"),
        console=ConsoleSettings(
            password=SecretStr(password) if password else None,
            faq_dir=str(data / "faq"),
            **console,
        ),
    )


@asynccontextmanager
async def serve(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[str, FakeChatAdapter]]:
    """teambot's server (uvicorn, ephemeral port) with the web chat and the fake platform."""
    runtime = Runtime(settings, extra=[lambda wiring: FakeChatAdapter(wiring.core)])
    fake = runtime.adapters[-1]
    assert isinstance(fake, FakeChatAdapter)
    async with running(create_server(settings, runtime)) as url:
        yield url, fake


@asynccontextmanager
async def running(app: Any) -> AsyncIterator[str]:
    """An ASGI app served by uvicorn on an ephemeral loopback port, until the block ends."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(1200):
        if server.started or task.done():
            break
        await asyncio.sleep(0.1)
    if not server.started:
        await task  # raises what stopped it
        pytest.fail("the server did not start within 120 s")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)


CHROMIUM = os.environ.get("TEAMBOT_TEST_CHROMIUM", "/usr/bin/chromium")
# Debian's chromium, headless, with nothing that reaches for the (closed) network
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def browser_or_skip() -> Any:
    """Playwright's async_playwright, or a skip that says what to install."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install -y chromium (Debian)")
    return async_playwright
