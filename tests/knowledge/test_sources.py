"""The source-kind door: a kind registered in one place is listed, read only where its version
changed, never pruned after a failed listing, and its own keys are checked."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from pydantic import BaseModel

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.sources import (
    DocumentRef,
    LoadError,
    SourceError,
    SourceKind,
    SourceKinds,
    UnknownKindError,
    builtin_kinds,
)
from knowledge.types import Document


@dataclass
class Wiki:
    """An in-memory document service: page id -> (version, title, text)."""

    pages: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    reads: list[str] = field(default_factory=list)
    listing_fails: bool = False
    broken: set[str] = field(default_factory=set)


class WikiOptions(BaseModel):
    model_config = {"extra": "forbid"}

    space: str = "main"


class WikiReader:
    def __init__(self, wiki: Wiki) -> None:
        self._wiki = wiki

    async def documents(self) -> AsyncIterator[DocumentRef]:
        for page, (version, title, _) in sorted(self._wiki.pages.items()):
            yield DocumentRef(
                uri=page, title=title, url=f"https://wiki.example/{page}", version=version
            )
        if self._wiki.listing_fails:
            raise SourceError("the wiki API answered 503 on page 2 of the listing")

    async def read(self, ref: DocumentRef) -> Document:
        self._wiki.reads.append(ref.uri)
        if ref.uri in self._wiki.broken:
            raise LoadError("scope docx:document:readonly missing: add it to the app")
        _, title, text = self._wiki.pages[ref.uri]
        return Document(uri=ref.uri, title=title, text=text, kind="markdown")

    async def aclose(self) -> None:
        return None


@pytest.fixture
def wiki() -> Wiki:
    return Wiki(
        {
            "vpn": ("v1", "VPN", "# VPN\n\nThe VPN gateway is vpn.example.com, port 443."),
            "leave": ("v1", "Leave", "# Leave\n\nAnnual leave is 15 days; ask your manager."),
            "printer": ("v1", "Printer", "# Printer\n\nThe third-floor printer is named Kestrel."),
        }
    )


@pytest.fixture
def kinds(wiki: Wiki) -> SourceKinds:
    registry = builtin_kinds()
    registry.register(
        SourceKind(
            name="wiki",
            label="测试知识库 / Test wiki",
            location_help="a space name",
            build=lambda source, options: WikiReader(wiki),
            options=WikiOptions,
        )
    )
    return registry


@pytest.fixture
async def base(
    settings: KnowledgeSettings, embedder: Embedder, kinds: SourceKinds
) -> AsyncIterator[KnowledgeBase]:
    kb = await KnowledgeBase.open(settings, embedder=embedder, kinds=kinds)
    yield kb
    await kb.close()


SOURCE = SourceSettings(name="team-wiki", kind="wiki", location="main", space="main")  # type: ignore[call-arg]


async def test_a_refresh_reads_only_documents_whose_version_changed(
    base: KnowledgeBase, wiki: Wiki
) -> None:
    first = await base.ingestor.refresh(SOURCE)
    assert (first.added, first.result) == (3, "ok")
    assert sorted(wiki.reads) == ["leave", "printer", "vpn"]
    [top] = await base.retriever.retrieve("What is the printer on the third floor called?", k=1)
    assert (top.title, top.location) == ("Printer", "https://wiki.example/printer")

    wiki.reads.clear()
    again = await base.ingestor.refresh(SOURCE)
    assert (again.unchanged, wiki.reads) == (3, [])  # nothing read, nothing embedded

    wiki.pages["printer"] = ("v2", "Printer", "# Printer\n\nThe third-floor printer is now Osprey.")
    edited = await base.ingestor.refresh(SOURCE)
    assert (edited.changed, edited.unchanged, wiki.reads) == (1, 2, ["printer"])
    [top] = await base.retriever.retrieve("What is the printer on the third floor called?", k=1)
    assert "Osprey" in top.text

    del wiki.pages["leave"]
    gone = await base.ingestor.refresh(SOURCE)
    assert gone.removed == 1
    assert all(p.title != "Leave" for p in await base.retriever.retrieve("annual leave days", k=5))


async def test_a_failed_listing_removes_nothing(base: KnowledgeBase, wiki: Wiki) -> None:
    await base.ingestor.refresh(SOURCE)
    del wiki.pages["vpn"]
    wiki.listing_fails = True
    report = await base.ingestor.refresh(SOURCE)
    assert report.result == "failed" and "503" in report.error
    assert report.removed == 0
    [top] = await base.retriever.retrieve("VPN gateway address", k=1)
    assert top.title == "VPN"


async def test_an_unreadable_document_keeps_its_last_good_version_and_is_read_again(
    base: KnowledgeBase, wiki: Wiki
) -> None:
    await base.ingestor.refresh(SOURCE)
    wiki.pages["vpn"] = ("v2", "VPN", "# VPN\n\nMoved to vpn2.example.com.")
    wiki.broken.add("vpn")
    report = await base.ingestor.refresh(SOURCE)
    assert report.failed == {"vpn": "scope docx:document:readonly missing: add it to the app"}
    [top] = await base.retriever.retrieve("VPN gateway address", k=1)
    assert "vpn.example.com" in top.text  # the last good version still answers

    wiki.broken.clear()
    wiki.reads.clear()
    fixed = await base.ingestor.refresh(SOURCE)
    assert (fixed.changed, wiki.reads) == (1, ["vpn"])


async def test_unknown_kinds_and_keys_are_refused_with_the_choices(base: KnowledgeBase) -> None:
    odd = SourceSettings(name="x", kind="gopher", location="somewhere")
    report = await base.ingestor.refresh(odd)
    assert report.result == "failed"
    assert "unknown knowledge source kind 'gopher'" in report.error
    assert "directory" in report.error and "wiki" in report.error

    with pytest.raises(UnknownKindError, match="brnch"):
        await base.add_source(
            SourceSettings(name="y", kind="wiki", location="main", brnch="x")  # type: ignore[call-arg]
        )


def test_each_kind_is_registered_once() -> None:
    registry = builtin_kinds()
    assert registry.names() == ["directory", "url", "sitemap", "git", "confluence", "notion"]
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.get("directory"))


def test_directory_versions_follow_the_files(tmp_path: Path) -> None:
    """A touched file gets a new version; an untouched one keeps it (no re-read)."""

    async def versions() -> dict[str, str]:
        reader = builtin_kinds().build(
            SourceSettings(name="d", kind="directory", location=str(tmp_path))
        )
        return {ref.uri: ref.version async for ref in reader.documents()}

    (tmp_path / "a.md").write_text("# A\n\none")
    (tmp_path / "b.md").write_text("# B\n\ntwo")
    before = asyncio.run(versions())
    os.utime(tmp_path / "b.md", ns=(1, 10**18))
    after = asyncio.run(versions())
    name = tmp_path.name
    assert before[f"{name}/a.md"] == after[f"{name}/a.md"]
    assert before[f"{name}/b.md"] != after[f"{name}/b.md"]
