"""The composition root: what the Runtime builds from settings, and how it starts and stops."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from adapters.base import AdapterStatus, Check
from adapters.slack.config import SlackSettings
from bot.console.config import ConsoleSettings
from bot.knowledge_ops.admin import Holder
from bot.runtime import Runtime
from bot.server import create_server
from bot.settings import ServerSettings, Settings
from engine.config import LLMSettings, StorageSettings
from engine.messages import ThreadKey
from engine.ports import ReplyChannel
from knowledge import KnowledgeSettings

SLACK = SlackSettings(
    enabled=True, mode="http", bot_token=SecretStr("xoxb-1"), signing_secret=SecretStr("s")
)


class Recording:
    """An adapter that remembers whether it was started and stopped; `fail` makes start fail."""

    def __init__(self, name: str, fail: bool = False) -> None:
        self.name, self.fail = name, fail
        self.started = self.stopped = False

    def router(self) -> None:
        return None

    async def start(self) -> None:
        if self.fail:
            raise RuntimeError(f"{self.name} cannot connect")
        self.started = True

    async def stop(self) -> None:
        self.stopped = True

    def reply_channel(self, key: ThreadKey, chat_type: object = None) -> ReplyChannel | None:
        return None

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=None)

    async def check(self) -> list[Check]:
        return []


async def statuses(settings: Settings, *paths: str) -> list[int]:
    """GET each path of the server for `settings`, not started: which routes are mounted."""
    transport = httpx.ASGITransport(app=create_server(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return [(await client.get(path)).status_code for path in paths]


async def test_adapters_and_routes_follow_what_the_settings_turn_on() -> None:
    quiet = Settings(server=ServerSettings(web_chat=False), console=ConsoleSettings(enabled=False))
    assert Runtime(quiet).adapters == []
    assert await statuses(quiet, "/healthz", "/readyz", "/", "/api/welcome", "/console/") == [
        200,
        503,  # starting: the lifespan has not opened the core
        404,
        404,
        404,
    ]

    both = Settings(slack=SLACK, console=ConsoleSettings(enabled=True))
    assert [a.name for a in Runtime(both).adapters] == ["web", "slack"]
    found = await statuses(both, "/", "/api/welcome", "/slack/events", "/console/")
    assert found[0] == 200 and 404 not in found[1:], found
    # doctor leaves out a platform whose credentials are missing
    assert [a.name for a in Runtime(both, without={"slack"}).adapters] == ["web"]


async def test_a_failed_start_stops_what_started_and_frees_the_data_folder(
    tmp_path: Path, sample_index: Path
) -> None:
    shutil.copytree(sample_index, tmp_path / "chroma")
    settings = Settings(
        server=ServerSettings(web_chat=False, recovery_sweep_seconds=3600),
        storage=StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"),
        llm=LLMSettings(enabled=False),
        knowledge=KnowledgeSettings(persist_dir=tmp_path / "chroma"),
    )
    good, bad = Recording("good"), Recording("bad", fail=True)
    runtime = Runtime(settings, extra=[lambda _: good, lambda _: bad])
    with pytest.raises(RuntimeError, match="bad cannot connect"):
        await runtime.start()
    assert good.started and good.stopped and not bad.stopped
    assert runtime.core.running() is None  # the core was closed again
    Holder.take(tmp_path / "chroma", 8080).release()  # nobody holds the folder any more
