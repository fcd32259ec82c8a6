"""Fixtures for the knowledge tests: one real embedding model per session, chroma in tmp dirs."""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings
from tests.helpers import kb_settings

HANDBOOK_FILES = ("vpn.md", "password-reset.md", "leave-policy.md")
_WORD = re.compile(
    r"[\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]|[^\s\u4e00-\u9fff\u3000-\u303f\uff00-\uffef]+"
)


def count_words(text: str) -> int:
    """A stand-in tokenizer for pure chunking tests: one token per word or CJK character."""
    return len(_WORD.findall(text))


@pytest.fixture
def settings(tmp_path: Path) -> KnowledgeSettings:
    return _settings(tmp_path / "chroma")


@pytest.fixture
async def kb(settings: KnowledgeSettings, embedder: Embedder) -> AsyncIterator[KnowledgeBase]:
    """An empty knowledge base in a fresh chroma folder."""
    base = await KnowledgeBase.open(settings, embedder=embedder)
    yield base
    await base.close()


@pytest.fixture
async def sample_kb(sample_index: Path, embedder: Embedder) -> AsyncIterator[KnowledgeBase]:
    """The indexed sample handbook (shared; do not write to it)."""
    base = await KnowledgeBase.open(_settings(sample_index), embedder=embedder)
    yield base
    await base.close()


@pytest.fixture
def handbook(tmp_path: Path) -> Path:
    """A writable copy of three English sample files (fewer chunks keep ingest tests fast)."""
    target = tmp_path / "handbook"
    target.mkdir()
    for name in HANDBOOK_FILES:
        shutil.copy2(KnowledgeBase.sample_path() / name, target / name)
    return target


def _settings(persist_dir: Path) -> KnowledgeSettings:
    return kb_settings(persist_dir)
