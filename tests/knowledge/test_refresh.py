"""Incremental refresh against the catalog: changed, removed and failing documents, embedding
reuse, reports, the atomic swap under concurrent queries, and collection scoping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from bot.db import upgrade_async
from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.catalog import Catalog, DocumentRow, RunRow
from tests.helpers import pg_schema

DOC = "# Travel\n\n" + "\n\n".join(
    f"Paragraph {i}: the travel desk books trains for trip {i}. VERSION-{{v}} applies."
    for i in range(40)
)


def _source(root: Path, name: str = "docs", collection: str = "default") -> SourceSettings:
    return SourceSettings(name=name, kind="directory", location=str(root), collection=collection)


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    root = tmp_path / "docs"
    root.mkdir()
    (root / "vpn.md").write_text("# VPN\n\nReset the GlobalConnect profile when GC-412 shows.\n")
    (root / "leave.md").write_text("# Leave\n\nEveryone gets 25 days of annual leave.\n")
    (root / "printing.txt").write_text("The third-floor printer is called Ada-3.\n")
    return root


@pytest.fixture
async def kb(tmp_path: Path, embedder: Embedder, docs: Path) -> KnowledgeBase:
    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma", collection="test-kb", sources=[_source(docs)]
    )
    base = await KnowledgeBase.open(settings, embedder=embedder)
    yield base  # type: ignore[misc]
    await base.close()


async def _runs(kb: KnowledgeBase) -> list[RunRow]:
    async with kb.catalog.engine.connect() as conn:
        rows = await conn.execute(select(RunRow.__table__).order_by(RunRow.id))
        return list(rows)  # type: ignore[arg-type]


async def test_first_run_adds_then_nothing_changes(kb: KnowledgeBase, embedder: Embedder) -> None:
    first = await kb.refresh("docs")
    assert (first.added, first.changed, first.removed, first.unchanged, first.failed) == (
        3,
        0,
        0,
        0,
        {},
    )
    assert first.result == "ok" and first.chunks == first.embedded == 3

    calls: list[int] = []
    real = embedder.embed

    async def counting(texts: list[str]) -> list[list[float]]:
        calls.append(len(texts))
        return await real(texts)

    embedder.embed = counting  # type: ignore[method-assign]
    try:
        again = await kb.refresh("docs")
    finally:
        del embedder.embed
    assert (again.added, again.changed, again.removed, again.unchanged) == (0, 0, 0, 3)
    assert calls == []
    runs = await _runs(kb)
    assert [(r.result, r.added, r.unchanged) for r in runs] == [("ok", 3, 0), ("ok", 0, 3)]
    assert all(r.finished_at >= r.started_at for r in runs)


async def test_changed_document_is_swapped_and_old_chunks_deleted(
    kb: KnowledgeBase, docs: Path
) -> None:
    await kb.refresh("docs")
    [before] = (await kb.catalog.known("docs"))["docs/vpn.md"].chunk_ids
    (docs / "vpn.md").write_text("# VPN\n\nThe VPN was replaced by ZeroTrust Access in 2025.\n")

    report = await kb.refresh("docs")

    assert (report.changed, report.unchanged) == (1, 2)
    [after] = (await kb.catalog.known("docs"))["docs/vpn.md"].chunk_ids
    assert before != after
    assert await kb.store.get([before]) == {}
    [top] = await kb.retriever.retrieve("ZeroTrust Access", k=1)
    assert top.location == "docs/vpn.md" and "ZeroTrust" in top.text


async def test_removed_document_disappears(kb: KnowledgeBase, docs: Path) -> None:
    await kb.refresh("docs")
    (docs / "leave.md").unlink()

    report = await kb.refresh("docs")

    assert (report.removed, report.unchanged) == (1, 2)
    assert "docs/leave.md" not in await kb.catalog.known("docs")
    passages = await kb.retriever.retrieve("how many days of annual leave", k=10)
    assert "docs/leave.md" not in {p.location for p in passages}
    assert await kb.store.count() == 2


async def test_failing_document_keeps_its_last_good_version(kb: KnowledgeBase, docs: Path) -> None:
    await kb.refresh("docs")
    (docs / "vpn.md").write_bytes(b"\x00\x01 not text any more")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4 truncated")

    report = await kb.refresh("docs")

    assert set(report.failed) == {"docs/vpn.md", "docs/broken.pdf"}
    assert report.result == "partial" and report.removed == 0
    known = await kb.catalog.known("docs")
    assert known["docs/vpn.md"].status == "failed" and known["docs/vpn.md"].chunk_ids
    [top] = await kb.retriever.retrieve("GC-412 GlobalConnect", k=1)
    assert top.location == "docs/vpn.md"
    async with kb.catalog.engine.connect() as conn:
        error = await conn.scalar(
            select(DocumentRow.error).where(DocumentRow.uri == "docs/broken.pdf")
        )
    assert "pdf" in error.lower()
    statuses = {s.name: s for s in await kb.statuses()}
    assert statuses["docs"].failed == 2 and statuses["docs"].result == "partial"


async def test_missing_source_removes_nothing(kb: KnowledgeBase, docs: Path) -> None:
    await kb.refresh("docs")
    await asyncio.to_thread(docs.rename, docs.with_name("moved"))

    report = await kb.refresh("docs")

    assert report.result == "failed" and "does not exist" in report.error
    assert report.removed == 0
    assert len(await kb.catalog.known("docs")) == 3


async def test_unchanged_chunks_reuse_their_embeddings(kb: KnowledgeBase, docs: Path) -> None:
    (docs / "travel.md").write_text(DOC.format(v="A"))
    first = await kb.refresh("docs")
    text = DOC.format(v="A").replace("Paragraph 39: the travel desk", "Paragraph 39: the bus desk")
    (docs / "travel.md").write_text(text)

    report = await kb.refresh("docs")

    assert report.changed == 1
    assert 0 < report.embedded < report.chunks < first.chunks


async def test_second_refresh_of_a_source_at_once_is_skipped(kb: KnowledgeBase) -> None:
    first, second = await asyncio.gather(kb.refresh("docs"), kb.refresh("docs"))
    assert sorted([first.result, second.result]) == ["ok", "skipped"]
    # another process holding the lease (the catalog row) also means "skip"
    assert await kb.catalog.acquire("docs", "directory", "default") is not None
    assert (await kb.refresh("docs")).result == "skipped"


async def test_swap_is_atomic_under_concurrent_queries(
    kb: KnowledgeBase, docs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (docs / "travel.md").write_text(DOC.format(v="A"))
    await kb.refresh("docs")
    (docs / "travel.md").write_text(DOC.format(v="B"))
    for name in ("upsert", "delete"):  # widen the windows between the steps of the swap
        real = getattr(kb.store, name)

        async def slow(*args: object, _real=real) -> object:  # type: ignore[no-untyped-def]
            await asyncio.sleep(0.05)
            result = await _real(*args)
            await asyncio.sleep(0.05)
            return result

        monkeypatch.setattr(kb.store, name, slow)
    seen: list[set[str]] = []
    done = asyncio.Event()

    async def ask() -> None:
        while not done.is_set():
            passages = await kb.retriever.retrieve("travel desk trains trip", k=10)
            seen.append({p.text.split("VERSION-")[1][0] for p in passages if "VERSION-" in p.text})
            await asyncio.sleep(0)

    askers = [asyncio.create_task(ask()) for _ in range(3)]
    report = await kb.refresh("docs")
    done.set()
    await asyncio.gather(*askers)

    assert report.changed == 1
    assert len(seen) > 5
    assert all(versions in ({"A"}, {"B"}) for versions in seen), seen
    assert seen[-1] == {"B"}


async def test_old_chunks_outlive_a_query_pinned_before_the_swap(
    kb: KnowledgeBase, docs: Path
) -> None:
    await kb.refresh("docs")
    [old] = (await kb.catalog.known("docs"))["docs/vpn.md"].chunk_ids
    (docs / "vpn.md").write_text("# VPN\n\nZeroTrust Access replaced the VPN.\n")
    async with kb.live.reading() as snapshot:
        refresh = asyncio.create_task(kb.refresh("docs"))
        for _ in range(400):
            await asyncio.sleep(0.01)
            if kb.live.current is not snapshot:
                break
        assert kb.live.current is not snapshot  # swapped ...
        assert old in snapshot.chunks and old in await kb.store.get([old])  # ... old still there
        assert not refresh.done()
    await refresh
    assert await kb.store.get([old]) == {}


async def test_collections_scope_retrieval(tmp_path: Path, embedder: Embedder, docs: Path) -> None:
    support = tmp_path / "support"
    support.mkdir()
    (support / "refunds.md").write_text("# Refunds\n\nCustomers get refunds within 14 days.\n")
    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma",
        collection="test-kb",
        sources=[_source(docs), _source(support, "support", "customers")],
        chat_collections={"feishu:oc_cs": ["customers"], "eng": ["default", "customers"]},
    )
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        await kb.refresh("docs")
        await kb.refresh("support")
        r = kb.retriever
        assert r.collections_for("feishu", "oc_cs") == ("customers",)
        assert r.collections_for("slack", "eng") == ("default", "customers")
        assert r.collections_for("slack", "random") == ("default",)

        for mode in ("dense", "lexical", "hybrid"):
            cs = await r.retrieve(
                "refunds within 14 days", k=10, collections=("customers",), mode=mode
            )
            assert {p.collection for p in cs} == {"customers"}, mode
            default = await r.retrieve("refunds within 14 days", k=10, mode=mode)
            assert "customers" not in {p.collection for p in default}, mode
        both = await r.retrieve("refunds", k=10, collections=("default", "customers"))
        assert {p.source for p in both} == {"docs", "support"}

        reopened = await KnowledgeBase.open(settings, embedder=embedder)  # live index from catalog
        try:
            [top] = await reopened.retriever.retrieve("refunds", k=1, collections=("customers",))
            assert top.location == "support/refunds.md"
        finally:
            await reopened.close()
    finally:
        await kb.close()


@pytest.mark.postgres
async def test_replicas_registering_a_new_source_together_get_one_lease() -> None:
    """Two replicas on one PostgreSQL start the scheduled refresh of a source no run has seen."""
    async with pg_schema() as (url, connect_args):
        await upgrade_async(url, connect_args=connect_args)
        catalogs = [Catalog(create_async_engine(url, connect_args=connect_args)) for _ in range(4)]
        try:
            leases = await asyncio.gather(
                *(c.acquire("handbook", "directory", "default") for c in catalogs)
            )
            assert sum(lease is not None for lease in leases) == 1
        finally:
            for catalog in catalogs:
                await catalog.close()
