"""Shared fixtures. Each fake speaks its real protocol over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from knowledge import Embedder, KnowledgeBase
from knowledge.config import KnowledgeSettings
from knowledge.embedding.onnx import OnnxEmbedder
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, kb_settings, make_core


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every fake lives on 127.0.0.1; slack_sdk (and others) read HTTP(S)_PROXY and ignore
    NO_PROXY, so proxies from the environment must not catch loopback traffic."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake_sglang() -> Iterator[FakeSGLang]:
    """A fresh fake SGLang (reasoning="separate") in a background thread; `.behave(...)` to vary."""
    with FakeSGLang() as fake:
        yield fake


@pytest.fixture(scope="session")
def embedder() -> Iterator[Embedder]:
    """The real bundled all-MiniLM-L6-v2 as a default install runs it (onnx, int8 unless the
    default changes), loaded once per session: indexes built with it are what a server started
    with the default settings serves, without a re-embed."""
    model = OnnxEmbedder(int8=KnowledgeSettings().embedding_int8)
    model.count_tokens("warm up")  # loads the model here, outside any test's timing
    yield model
    asyncio.run(model.close())


@pytest.fixture(scope="session")
def sample_index(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A chroma folder holding the bundled sample handbook, indexed once; treat as read-only."""
    persist_dir = tmp_path_factory.mktemp("sample-chroma")

    async def build() -> None:
        kb = await KnowledgeBase.open(kb_settings(persist_dir), embedder=embedder)
        try:
            report = await kb.ensure_sample()
            assert report is not None and not report.failed
        finally:
            await kb.close()

    asyncio.run(build())
    return persist_dir


@pytest.fixture
async def core(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Core]:
    """A real Conversation: SQLite store, the sample handbook, the client at the fake SGLang."""
    built, kb = await make_core(tmp_path, embedder, sample_index, fake_sglang)
    yield built
    await built.llm.close()
    await kb.close()
    await built.store.close()
