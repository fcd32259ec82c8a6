"""Sources added and removed while teambot runs: the sample steps aside, another process's
change is noticed through the catalog's generation, bad uploads change nothing, and removing
a source while it refreshes (or two changes at once) never leaves half a source behind."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from knowledge import (
    Embedder,
    KnowledgeBase,
    SourceConflictError,
    SourceSettings,
    UnknownSourceError,
)
from knowledge.uploads import adopt_folder, forget_file, upload
from tests.helpers import kb_settings


def folder(tmp_path: Path, name: str, files: dict[str, str]) -> Path:
    root = tmp_path / name
    root.mkdir()
    for file, text in files.items():
        (root / file).write_text(text, encoding="utf-8")
    return root


async def sample_copy(
    tmp_path: Path, sample_index: Path, embedder: Embedder, **settings: object
) -> KnowledgeBase:
    shutil.copytree(sample_index, tmp_path / "chroma")
    values = kb_settings(tmp_path / "chroma").model_dump()
    values.update(settings)
    values["uploads_dir"] = tmp_path / "uploads"
    return await KnowledgeBase.open(
        type(kb_settings(tmp_path)).model_validate(values), embedder=embedder
    )


async def test_the_sample_steps_aside_for_the_first_real_source(
    tmp_path: Path, sample_index: Path, embedder: Embedder
) -> None:
    kb = await sample_copy(tmp_path, sample_index, embedder)
    try:
        assert "sample" in {p.source for p in await kb.retriever.retrieve("book a meeting room")}
        kb_dir = folder(tmp_path, "kb", {"rooms.md": "# Rooms\n\nBook rooms in the Roomie app.\n"})
        removed = await kb.add_source(
            SourceSettings(name="kb", kind="directory", location=str(kb_dir))
        )
        assert removed is not None and removed[1] == 57  # every sample chunk
        await kb.refresh("kb")
        found = await kb.retriever.retrieve("book a meeting room")
        assert {p.source for p in found} == {"kb"}
        assert not await kb.store.ids("sample")  # vectors gone too
        assert [s.name for s in await kb.statuses()] == ["kb"]
        assert await kb.ensure_sample() is None  # and it does not come back
    finally:
        await kb.close()


async def test_seed_sample_off_removes_it_at_start(
    tmp_path: Path, sample_index: Path, embedder: Embedder
) -> None:
    kb = await sample_copy(tmp_path, sample_index, embedder, seed_sample=False)
    try:
        assert await kb.settle_sample() == (8, 57)
        assert len(kb.live) == 0 and await kb.retriever.retrieve("annual leave") == []
    finally:
        await kb.close()


async def test_another_process_change_is_seen_after_reload(
    tmp_path: Path, embedder: Embedder
) -> None:
    settings = kb_settings(tmp_path / "chroma")
    writer = await KnowledgeBase.open(settings, embedder=embedder)
    reader = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        docs = folder(tmp_path, "docs", {"a.md": "# Canteen\n\nLunch is at noon.\n"})
        await writer.add_source(SourceSettings(name="docs", kind="directory", location=str(docs)))
        await writer.refresh("docs")
        swapped = writer.live.current.generation
        assert await writer.reload()  # its own changes: noticed, not rebuilt (already live)
        assert writer.live.current.generation == swapped and len(writer.live) == 1
        assert await reader.reload()  # the generation moved
        assert [s.name for s in reader.sources] == ["docs"]  # the scheduler's list follows
        assert reader.origin("docs") == "runtime"
        assert len(reader.live) == 1
        assert not await reader.reload()  # nothing new: one cheap query
    finally:
        await writer.close()
        await reader.close()


async def test_config_sources_cannot_be_removed_or_shadowed(kb: KnowledgeBase) -> None:
    configured = kb.settings.model_copy(
        update={"sources": [SourceSettings(name="cfg", kind="directory", location="/nowhere")]}
    )
    kb.settings = configured
    with pytest.raises(SourceConflictError, match=r"teambot\.toml"):
        await kb.remove_source("cfg")
    with pytest.raises(SourceConflictError, match=r"teambot\.toml"):
        await kb.add_source(SourceSettings(name="cfg", kind="directory", location="/x"))
    with pytest.raises(UnknownSourceError):
        await kb.remove_source("never-added")


async def test_bad_uploads_get_their_own_error_and_change_nothing(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    kb.settings = kb.settings.model_copy(
        update={"upload_max_mb": 0.001, "uploads_dir": tmp_path / "uploads"}  # about 1 KB
    )
    before = await kb.catalog.generation()
    results = await upload(
        kb,
        [
            ("virus.exe", b"MZ"),
            ("big.md", b"# Big\n\n" + b"word " * 400),
            ("scan.pdf", b"%PDF-1.7 not a pdf"),
            ("empty.md", b"   \n"),
            ("../../etc/passwd.md", b""),
        ],
    )
    assert [r.ok for r in results] == [False] * 5
    assert "unsupported file type .exe" in results[0].message
    assert "too large" in results[1].message
    assert "cannot parse" in results[2].message
    assert "no text" in results[3].message
    assert results[4].name == "passwd.md"  # folders from the browser are dropped
    assert await kb.catalog.generation() == before  # nothing else changed
    assert await kb.statuses() == []
    assert await kb.files.list("") == []
    assert not Path(kb.settings.uploads_dir).exists()


async def test_good_and_bad_uploads_together(kb: KnowledgeBase, tmp_path: Path) -> None:
    kb.settings = kb.settings.model_copy(update={"uploads_dir": tmp_path / "uploads"})
    results = await upload(
        kb, [("faq.csv", b"question,answer\nWhere is the gym?,Basement of building B\n"),
             ("notes.bin", b"\x00")],
    )  # fmt: skip
    assert results[0].ok and results[0].chunks >= 1 and not results[1].ok
    found = await kb.retriever.retrieve("Where is the gym?")
    assert found and found[0].source == "uploads"
    # kept in the shared file store (every replica reads it), not on this machine's disk
    assert [f.key for f in await kb.files.list("")] == ["uploads/faq.csv"]
    assert not Path(kb.settings.uploads_dir).exists()


async def test_uploads_an_older_version_kept_on_disk_move_into_the_file_store(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    """An older version kept uploads in a folder, as a `directory` source: at start they move
    into the store, the source reads the store, and nothing is indexed twice."""
    legacy = folder(tmp_path, "uploads", {"gym.md": "# Gym\n\nThe gym is in the basement of B.\n"})
    kb.settings = kb.settings.model_copy(update={"uploads_dir": legacy})
    await kb.add_source(
        SourceSettings(name="uploads", kind="directory", location=str(legacy)), origin="upload"
    )
    await kb.refresh("uploads")
    before = await kb.catalog.documents("uploads")
    assert [d.uri for d in before] == ["uploads/gym.md"]

    assert await adopt_folder(kb) == 1
    assert await adopt_folder(kb) == 0  # once
    assert kb.source("uploads").kind == "stored"
    assert await kb.files.get("uploads/gym.md") == (legacy / "gym.md").read_bytes()
    (legacy / "gym.md").unlink()  # the folder no longer matters
    report = await kb.refresh("uploads")
    assert report.result == "ok" and report.added == 0 and report.removed == 0
    assert [d.uri for d in await kb.catalog.documents("uploads")] == ["uploads/gym.md"]
    found = await kb.retriever.retrieve("Where is the gym?")
    assert found and found[0].location == "uploads/gym.md"

    # removed through any replica: gone from the store, and a refresh does not bring it back
    await kb.ingestor.delete_document("uploads/gym.md", source="uploads")
    await forget_file(kb, "uploads/gym.md")
    await kb.refresh("uploads")
    assert await kb.catalog.documents("uploads") == []


async def test_remove_while_refreshing_cancels_it_cleanly(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    docs = folder(
        tmp_path, "many", {f"d{i}.md": f"# Doc {i}\n\nFact number {i}.\n" for i in range(40)}
    )
    await kb.add_source(SourceSettings(name="many", kind="directory", location=str(docs)))
    started = asyncio.Event()

    def progress(phase: str, done: int, total: int) -> None:
        if done >= 2:
            started.set()

    refresh = asyncio.create_task(kb.refresh("many", progress))
    await asyncio.wait_for(started.wait(), 60)
    documents, chunks = await kb.remove_source("many")
    report = await refresh
    assert report.result == "failed" and "cancelled" in report.error
    assert documents == chunks and documents < 40  # stopped early, then all of it removed
    assert await kb.catalog.known("many") == {}
    assert await kb.store.ids("many") == set()
    assert len(kb.live) == 0
    assert "many" not in {s.name for s in await kb.statuses()}


async def test_two_changes_to_one_source_at_once_leave_no_half_deleted_documents(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    docs = folder(tmp_path, "pair", {f"p{i}.md": f"# P{i}\n\nText {i}.\n" for i in range(6)})
    await kb.add_source(SourceSettings(name="pair", kind="directory", location=str(docs)))
    await kb.refresh("pair")
    known = await kb.catalog.known("pair")
    # two operators: one deletes documents while the other removes the whole source
    outcomes = await asyncio.gather(
        *(kb.ingestor.delete_document(uri, source="pair") for uri in sorted(known)[:3]),
        kb.remove_source("pair"),
        return_exceptions=True,
    )
    assert not [o for o in outcomes if isinstance(o, BaseException)], outcomes
    assert await kb.catalog.known("pair") == {}
    assert await kb.store.ids("pair") == set()
    assert len(kb.live) == 0


async def test_origins_are_recorded_and_the_managed_faq_is_no_orphan(
    kb: KnowledgeBase, tmp_path: Path
) -> None:
    from knowledge.registry import orphaned

    docs = folder(tmp_path, "docs", {"a.md": "# A\n\nAlpha.\n"})
    await kb.add_source(SourceSettings(name="docs", kind="directory", location=str(docs)))
    await kb.ingestor.ingest_documents([], source="handoff-faq")  # as the console's FAQ does
    await kb.ingestor.ingest_documents([], source="gone")  # a source nobody knows any more
    statuses = {s.name: s for s in await kb.statuses()}
    assert statuses["docs"].origin == "runtime" and not orphaned(statuses["docs"])
    assert statuses["docs"].location == str(docs) and statuses["docs"].schedule == "0 3 * * *"
    assert statuses["handoff-faq"].origin == "faq" and not orphaned(statuses["handoff-faq"])
    assert orphaned(statuses["gone"])


async def test_a_reload_swaps_only_what_another_process_changed(
    tmp_path: Path, embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = kb_settings(tmp_path / "chroma")
    writer = await KnowledgeBase.open(settings, embedder=embedder)
    reader = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        docs = folder(tmp_path, "docs", {f"d{i}.md": f"# D{i}\n\nFact {i}.\n" for i in range(5)})
        await writer.add_source(SourceSettings(name="docs", kind="directory", location=str(docs)))
        await writer.refresh("docs")
        await reader.reload()
        asked: list[set[int]] = []
        real = reader.catalog.tokens

        async def tokens(documents):  # type: ignore[no-untyped-def]
            asked.append(set(documents))
            return await real(documents)

        monkeypatch.setattr(reader.catalog, "tokens", tokens)
        (docs / "d2.md").write_text("# D2\n\nThe canteen moved to building D.\n", encoding="utf-8")
        (docs / "d4.md").unlink()
        await writer.refresh("docs")
        assert await reader.reload()
        assert [len(a) for a in asked] == [1]  # the changed document's tokens, nothing else
        assert len(reader.live) == 4
        found = await reader.retriever.retrieve("Where is the canteen now?")
        assert found[0].location.endswith("d2.md") and "building D" in found[0].text
    finally:
        await writer.close()
        await reader.close()
