"""Web lookup fixtures: the fake SearXNG and pages on 127.0.0.1, and a core that may use them.

The guard refuses loopback addresses, and the fakes live on 127.0.0.1: every lookup here that
should reach them allows 127.0.0.1 explicitly through `allow_hosts`, as an operator would allow
an intranet host.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.db import upgrade_async
from engine.config import ConversationSettings, LLMSettings
from engine.conversation import Conversation
from engine.llm import LLMClient
from engine.store.conversations import ConversationStore
from engine.weblookup import WebLookup, WebSettings
from knowledge import Embedder, KnowledgeBase
from tests.fakes.searx import FakeWeb
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, kb_settings


def web_settings(fake: FakeWeb, **overrides: Any) -> WebSettings:
    """Settings that reach the fakes: SearXNG at the fake, 127.0.0.1 allowlisted, short timeouts."""
    values: dict[str, Any] = {
        "mode": "on_request",
        "searxng_url": fake.url,
        "allow_hosts": ["127.0.0.1:*"],
        "timeout": 2.0,
        "cache_ttl": 0,
    }
    values.update(overrides)
    return WebSettings(**values)


@pytest.fixture
def fake_web() -> Iterator[FakeWeb]:
    with FakeWeb() as fake:
        yield fake


@dataclass
class WebCore(Core):
    web: WebLookup | None = None


async def make_web_core(
    tmp_path: Path,
    embedder: Embedder,
    sample_index: Path,
    fake: FakeSGLang,
    web: WebLookup | None,
) -> tuple[WebCore, KnowledgeBase]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"
    await upgrade_async(url)
    store = ConversationStore.from_url(url)
    kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
    client = LLMClient(LLMSettings(base_url=fake.base_url, first_token_timeout=5, idle_timeout=2))
    conversation = Conversation(
        ConversationSettings(),
        store=store,
        retriever=kb.retriever,
        llm=client,
        web=web,
    )
    return WebCore(conversation, store, client, fake, web), kb


@pytest.fixture
async def web_core_factory(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Any]:
    """`await factory(settings)`: a real core (SQLite, sample handbook, fake SGLang) with a web
    lookup built from `settings`; everything is closed afterwards."""
    opened: list[tuple[WebCore, KnowledgeBase]] = []

    async def factory(settings: WebSettings | None) -> WebCore:
        lookup = WebLookup(settings) if settings is not None else None
        built, kb = await make_web_core(
            tmp_path / f"core{len(opened)}", embedder, sample_index, fake_sglang, lookup
        )
        opened.append((built, kb))
        return built

    yield factory
    for built, kb in opened:
        if built.web is not None:
            await built.web.close()
        await built.llm.close()
        await kb.close()
        await built.store.close()
