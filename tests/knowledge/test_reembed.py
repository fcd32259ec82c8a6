"""Changing the embedding model: the old vectors serve until the new ones are complete."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from knowledge import KnowledgeBase, KnowledgeSettings
from knowledge.reembed import ModelStore
from tests.fakes.embeddings import FakeEmbeddings

OLD, NEW = "fake-multilingual", "fake-other-multilingual"  # the fake hashes these differently


@pytest.fixture
def fake() -> Iterator[FakeEmbeddings]:
    with FakeEmbeddings() as server:
        yield server


def _settings(tmp_path: Path, fake: FakeEmbeddings, model: str) -> KnowledgeSettings:
    return KnowledgeSettings(
        persist_dir=tmp_path / "chroma",
        collection="swap-kb",
        embedding_backend="http",
        embedding_url=fake.url,
        embedding_model=model,
    )


def _query_models(fake: FakeEmbeddings, question: str) -> list[str]:
    return [r.model for r in fake.requests if r.inputs == (question,)]


async def test_a_model_change_swaps_the_index_in_one_step(
    fake: FakeEmbeddings, tmp_path: Path, handbook: Path
) -> None:
    kb = await KnowledgeBase.open(_settings(tmp_path, fake, OLD))
    report = await kb.ingestor.ingest_path(handbook, source="handbook")
    assert report.result == "ok" and kb.pending is None
    chunks = await kb.store.count()
    old_name = kb.store.name if isinstance(kb.store, ModelStore) else ""
    await kb.close()

    kb = await KnowledgeBase.open(_settings(tmp_path, fake, NEW))
    try:
        assert kb.pending is not None and kb.embedder.model_name == OLD
        release = asyncio.Event()
        copying = asyncio.Event()
        embed = kb.pending.embedder.embed

        async def held(texts: list[str]) -> list[list[float]]:
            copying.set()
            await release.wait()
            return await embed(texts)

        kb.pending.embedder.embed = held  # type: ignore[method-assign]
        task = kb.start_reembed()
        assert task is not None
        await copying.wait()

        # mid-copy: answers come from the old model's complete index
        fake.clear()
        during = await kb.retriever.retrieve("How do I reset my VPN?")
        assert during[0].location == "handbook/vpn.md"
        assert set(_query_models(fake, "How do I reset my VPN?")) == {OLD}
        # a refresh meanwhile writes to the serving (old) index ...
        extra = tmp_path / "extra"
        extra.mkdir()
        (extra / "parking.md").write_text(
            "# Parking\n\nBicycle parking is in the basement cage.\n", "utf-8"
        )
        added = await kb.ingestor.ingest_path(extra, source="extra")
        assert added.result == "ok"

        release.set()
        await asyncio.wait_for(task, 60)

        # ... and is in the new one after the switch, which serves with the new model alone
        assert kb.pending is None and kb.embedder.model_name == NEW
        assert await kb.store.count() == chunks + added.chunks
        fake.clear()
        after = await kb.retriever.retrieve("Where do I park my bicycle?")
        assert after[0].location == "extra/parking.md"
        assert set(_query_models(fake, "Where do I park my bicycle?")) == {NEW}
        store = kb.store
        assert isinstance(store, ModelStore) and store.name != old_name
        assert old_name not in {name for name, _ in await store.siblings("swap-kb")}
    finally:
        await kb.close()

    again = await KnowledgeBase.open(_settings(tmp_path, fake, NEW))
    try:
        assert again.pending is None and again.embedder.model_name == NEW
        assert await again.store.count() == chunks + added.chunks
    finally:
        await again.close()


async def test_an_interrupted_copy_never_serves(
    fake: FakeEmbeddings, tmp_path: Path, handbook: Path
) -> None:
    kb = await KnowledgeBase.open(_settings(tmp_path, fake, OLD))
    await kb.ingestor.ingest_path(handbook, source="handbook")
    chunks = await kb.store.count()
    await kb.close()

    kb = await KnowledgeBase.open(_settings(tmp_path, fake, NEW))
    assert kb.pending is not None
    await kb.pending.copy()  # a first pass, then the process stops before switching
    await kb.close()

    kb = await KnowledgeBase.open(_settings(tmp_path, fake, NEW))
    try:
        assert kb.pending is not None and kb.embedder.model_name == OLD
        task = kb.start_reembed()
        assert task is not None
        await asyncio.wait_for(task, 60)
        assert kb.embedder.model_name == NEW and await kb.store.count() == chunks
    finally:
        await kb.close()


async def test_an_index_built_with_torch_serves_on_onnx_without_a_re_embed(
    tmp_path: Path, handbook: Path
) -> None:
    """onnx in full precision serves torch's index as it is (the same vectors); the default
    (int8, another model) re-embeds it: the old index is served by onnx, not torch, while the
    new one fills, and answers on int8 once it is complete — what an upgrade does."""
    from knowledge.embedding.torch import TorchEmbedder

    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma", collection="torch-kb", embedding_int8=False
    )
    built = await KnowledgeBase.open(
        settings.model_copy(update={"embedding_backend": "torch"}), embedder=TorchEmbedder()
    )
    report = await built.ingestor.ingest_path(handbook, source="handbook")
    assert report.result == "ok"
    chunks = await built.store.count()
    await built.close()

    kb = await KnowledgeBase.open(settings)  # onnx, full precision
    try:
        assert kb.pending is None and kb.embedder.backend_name == "onnx"
        assert await kb.store.count() == chunks
        found = await kb.retriever.retrieve("How do I reset my VPN?")
        assert found[0].location == "handbook/vpn.md"
    finally:
        await kb.close()

    upgraded = KnowledgeSettings(  # the defaults
        persist_dir=tmp_path / "chroma", collection="torch-kb", embedding_cache_dir=str(tmp_path)
    )
    assert upgraded.embedding_int8
    kb = await KnowledgeBase.open(upgraded)
    try:
        assert kb.pending is not None and kb.pending.embedder.model_name.endswith("(int8)")
        assert kb.embedder.backend_name == "onnx" and not kb.embedder.model_name.endswith("(int8)")
        task = kb.start_reembed()
        found = await kb.retriever.retrieve("How do I reset my VPN?")  # served meanwhile
        assert found[0].location == "handbook/vpn.md"
        assert task is not None
        await asyncio.wait_for(task, 120)
        assert kb.embedder.model_name.endswith("(int8)") and await kb.store.count() == chunks
        found = await kb.retriever.retrieve("How do I reset my VPN?")
        assert found[0].location == "handbook/vpn.md"
    finally:
        await kb.close()
