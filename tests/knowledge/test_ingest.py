from __future__ import annotations

from pathlib import Path

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings
from knowledge.ingest import chunk_id
from tests.knowledge.conftest import HANDBOOK_FILES

SAMPLE_FILES = 8
FILES = len(HANDBOOK_FILES)


async def test_sample_is_package_data_and_seeds_an_empty_collection(kb: KnowledgeBase) -> None:
    names = {p.name for p in KnowledgeBase.sample_path().iterdir()}
    assert {"vpn.md", "报销流程.md", "入职指南.md"} <= names
    assert len(names) == SAMPLE_FILES

    report = await kb.ensure_sample()

    assert report is not None
    assert (report.files_seen, report.files_indexed, report.failed) == (
        SAMPLE_FILES,
        SAMPLE_FILES,
        {},
    )
    assert report.chunks == await kb.store.count() > SAMPLE_FILES
    assert await kb.ensure_sample() is None  # not empty any more


async def test_seed_sample_off(settings: KnowledgeSettings, embedder: Embedder) -> None:
    settings = settings.model_copy(update={"seed_sample": False})
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        assert await kb.ensure_sample() is None
        assert await kb.store.count() == 0
    finally:
        await kb.close()


async def test_progress_reports_every_phase(kb: KnowledgeBase, handbook: Path) -> None:
    events: list[tuple[str, int, int]] = []

    report = await kb.ingestor.ingest_path(
        handbook, source="hb", progress=lambda *e: events.append(e)
    )

    finals = {phase: (done, total) for phase, done, total in events}
    assert finals == {
        "documents": (FILES, FILES),
        "embeddings": (report.chunks, report.chunks),
    }
    assert events[0] == ("documents", 0, FILES)


async def test_chunk_ids_and_metadata(kb: KnowledgeBase, handbook: Path) -> None:
    await kb.ingestor.ingest_path(handbook, source="hb")

    chunks = await kb.store.document_chunks("hb", "handbook/vpn.md")

    version = (await kb.catalog.known("hb"))["handbook/vpn.md"].content_hash
    assert [c.chunk_id for c in chunks] == [
        chunk_id("hb", "handbook/vpn.md", i, version) for i in range(len(chunks))
    ]
    assert chunks[0].chunk_id.startswith("hb:") and chunks[0].chunk_id.endswith(":0")
    assert {c.title for c in chunks} == {"Connecting to the VPN"}
    assert "Connecting to the VPN > Resetting the VPN" in {c.section for c in chunks}
    assert {c.source for c in chunks} == {"hb"}


async def test_unchanged_reingest_embeds_nothing(
    kb: KnowledgeBase, handbook: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = await kb.ingestor.ingest_path(handbook, source="hb")
    count = await kb.store.count()
    calls: list[int] = []
    real_embed = embedder.embed

    async def counting_embed(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return await real_embed(texts)

    monkeypatch.setattr(embedder, "embed", counting_embed)

    again = await kb.ingestor.ingest_path(handbook, source="hb")

    assert first.files_indexed == FILES
    assert (again.files_unchanged, again.files_indexed, again.chunks) == (FILES, 0, 0)
    assert calls == []
    assert await kb.store.count() == count


async def test_changed_file_alone_is_reindexed(kb: KnowledgeBase, handbook: Path) -> None:
    await kb.ingestor.ingest_path(handbook, source="hb")
    before = await kb.store.document_chunks("hb", "handbook/vpn.md")
    total = await kb.store.count()
    (handbook / "vpn.md").write_text(
        "# Connecting to the VPN\n\nThe VPN was replaced by ZeroTrust Access in 2025.\n", "utf-8"
    )

    report = await kb.ingestor.ingest_path(handbook, source="hb")

    assert (report.files_indexed, report.files_unchanged) == (1, FILES - 1)
    after = await kb.store.document_chunks("hb", "handbook/vpn.md")
    assert [c.text for c in after] == ["The VPN was replaced by ZeroTrust Access in 2025."]
    assert await kb.store.count() == total - len(before) + 1
    [top] = await kb.retriever.retrieve("ZeroTrust Access", k=1)
    assert top.location == "handbook/vpn.md"
    assert "GlobalConnect" not in top.text


async def test_deleted_file_is_pruned(kb: KnowledgeBase, handbook: Path) -> None:
    await kb.ingestor.ingest_path(handbook, source="hb")
    (handbook / "leave-policy.md").unlink()

    report = await kb.ingestor.ingest_path(handbook, source="hb")

    assert (report.files_removed, report.files_unchanged) == (1, FILES - 1)
    assert await kb.store.document_chunks("hb", "handbook/leave-policy.md") == []
    passages = await kb.retriever.retrieve("how many days of annual leave", k=10)
    assert "handbook/leave-policy.md" not in {p.location for p in passages}


async def test_delete_document_and_source(kb: KnowledgeBase, handbook: Path) -> None:
    await kb.ingestor.ingest_path(handbook, source="hb")
    await kb.ingestor.ingest_path(handbook / "vpn.md", source="single")

    await kb.ingestor.delete_document("handbook/password-reset.md", source="hb")
    assert await kb.store.document_chunks("hb", "handbook/password-reset.md") == []
    remaining = set(await kb.store.fingerprints("hb"))
    assert len(remaining) == FILES - 1
    assert "handbook/password-reset.md" not in remaining

    await kb.ingestor.delete_source("hb")
    assert await kb.store.fingerprints("hb") == {}
    assert set(await kb.store.fingerprints("single")) == {"handbook/vpn.md"}


async def test_broken_file_is_reported_and_keeps_old_chunks(
    kb: KnowledgeBase, handbook: Path
) -> None:
    await kb.ingestor.ingest_path(handbook, source="hb")
    (handbook / "vpn.md").write_bytes(b"\x00\x01 not text")
    (handbook / "notes.txt").write_text("Printer codes: the lobby printer is LOBBY-1.", "utf-8")

    report = await kb.ingestor.ingest_path(handbook, source="hb")

    assert set(report.failed) == {"handbook/vpn.md"}
    assert (report.files_indexed, report.files_removed) == (1, 0)
    assert await kb.store.document_chunks("hb", "handbook/vpn.md") != []


async def test_missing_path_raises_with_the_path(kb: KnowledgeBase, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        await kb.ingestor.ingest_path(tmp_path / "nowhere", source="x")
