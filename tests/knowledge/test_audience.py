"""Audiences through the real KnowledgeBase: no retrieval returns a passage its reader may not
open, in any retrieval mode, and permissions follow the documents on refresh."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from knowledge import Embedder, KnowledgeBase, SourceKind, SourceSettings
from knowledge.audience import EVERYONE, WEB, Reader, describe, dump, load, parse
from knowledge.sources import DocumentRef
from knowledge.types import Audience, Document
from tests.helpers import kb_settings

CHAT_A = "feishu:chat:oc_a"
TENANT = "feishu:tk1"
TEXTS = {
    "falcon": "Project Falcon launch codes are kept in vault seven behind the blue door.",
    "canteen": "The Acme canteen serves falcon shaped pancakes every Friday at eight.",
    "salary": "Falcon team salary bands are reviewed each March by the pay committee.",
    "ada": "Ada's falcon onboarding checklist lists her laptop and badge pickup.",
    "web": "The falcon help desk answers from the web chat on weekdays.",
}
# The first listing: each document's own audience (None: the source's, which is nobody here).
AUDIENCES: dict[str, Audience | None] = {
    "falcon": Audience(principals=frozenset({CHAT_A})),
    "canteen": Audience(tenant=TENANT),
    "salary": None,
    "ada": Audience(principals=frozenset({"feishu:user:ou_ada"})),
    "web": Audience(principals=frozenset({WEB})),
}


def group(chat: str, tenant: str = "tk1") -> Reader:
    return Reader("feishu", tenant, chat, "group")


def direct(user: str, tenant: str = "tk1") -> Reader:
    return Reader("feishu", tenant, f"oc_dm_{user}", "direct", user)


WEB_CHAT = Reader("web", "local", "c1", "direct", "c1")


@dataclass
class Perms:
    """A source kind whose listing carries each document's audience (as Feishu's will)."""

    audiences: dict[str, Audience | None] = field(default_factory=lambda: dict(AUDIENCES))
    reads: list[str] = field(default_factory=list)

    def kind(self) -> SourceKind:
        return SourceKind("perms", "test", "anything", self.build)

    def build(self, source: SourceSettings, options: Any) -> Perms:
        return self

    async def documents(self) -> AsyncIterator[DocumentRef]:
        for uri, audience in self.audiences.items():
            yield DocumentRef(uri, title=uri, version="1", audience=audience)

    async def read(self, ref: DocumentRef) -> Document:
        self.reads.append(ref.uri)
        return Document(ref.uri, ref.title, TEXTS[ref.uri], "text")

    async def aclose(self) -> None:
        return None


def settings_with(persist_dir: Path, *sources: SourceSettings) -> Any:
    return kb_settings(persist_dir).model_copy(update={"sources": list(sources)})


@pytest.fixture
async def perms_kb(
    tmp_path: Path, embedder: Embedder
) -> AsyncIterator[tuple[KnowledgeBase, Perms]]:
    perms = Perms()
    source = SourceSettings(name="wiki", kind="perms", location="x", permissions="platform")
    kb = await KnowledgeBase.open(settings_with(tmp_path / "chroma", source), embedder=embedder)
    kb.kinds.register(perms.kind())
    report = await kb.refresh("wiki")
    assert report.result == "ok" and report.added == 5
    yield kb, perms
    await kb.close()


async def seen(kb: KnowledgeBase, reader: Reader | None, mode: str = "hybrid") -> set[str]:
    passages = await kb.retriever.retrieve("falcon", k=10, reader=reader, mode=mode)
    return {p.location for p in passages}


@pytest.mark.parametrize("mode", ["hybrid", "dense", "lexical"])
async def test_each_reader_sees_only_what_it_may_open(
    perms_kb: tuple[KnowledgeBase, Perms], mode: str
) -> None:
    kb, _ = perms_kb
    assert await seen(kb, None, mode) == set(TEXTS)  # an operator's tool sees everything
    assert await seen(kb, group("oc_a"), mode) == {"falcon", "canteen"}
    assert await seen(kb, group("oc_b"), mode) == {"canteen"}
    assert await seen(kb, direct("ou_bob"), mode) == {"canteen"}  # not a member of chat A
    assert await seen(kb, direct("ou_ada"), mode) == {"canteen", "ada"}
    assert await seen(kb, WEB_CHAT, mode) == {"web"}
    assert await seen(kb, group("oc_a", tenant="tk2"), mode) == {"falcon"}  # not tenant tk1's


async def test_a_document_shared_with_one_member_is_not_cited_in_her_group(
    perms_kb: tuple[KnowledgeBase, Perms],
) -> None:
    kb, _ = perms_kb
    assert "ada" in await seen(kb, direct("ou_ada"))
    assert "ada" not in await seen(kb, Reader("feishu", "tk1", "oc_a", "group", "ou_ada"))


async def test_permissions_follow_the_document_without_an_edit(
    perms_kb: tuple[KnowledgeBase, Perms],
) -> None:
    kb, perms = perms_kb
    perms.audiences["falcon"] = Audience(principals=frozenset({"feishu:chat:oc_b"}))
    perms.reads.clear()

    report = await kb.refresh("wiki")

    assert perms.reads == []  # nothing was re-read: only the audience changed
    assert report.unchanged == 5
    assert "falcon" not in await seen(kb, group("oc_a"))
    assert "falcon" in await seen(kb, group("oc_b"))
    documents = {d.uri: d for d in await kb.catalog.documents("wiki")}
    assert documents["falcon"].audience == perms.audiences["falcon"]
    assert documents["salary"].audience is None  # unknown: the source's (nobody)


async def test_another_process_sees_the_audiences(
    perms_kb: tuple[KnowledgeBase, Perms], embedder: Embedder
) -> None:
    kb, _ = perms_kb
    other = await KnowledgeBase.open(kb.settings, embedder=embedder)
    try:
        assert await seen(other, group("oc_a")) == {"falcon", "canteen"}
        assert await seen(other, WEB_CHAT) == {"web"}
    finally:
        await other.close()


async def test_a_source_audience_applies_at_the_next_start_without_a_refresh(
    tmp_path: Path, embedder: Embedder
) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "falcon.md").write_text("# Falcon\n\n" + TEXTS["falcon"], encoding="utf-8")
    persist = tmp_path / "chroma"
    open_to_all = SourceSettings(name="handbook", kind="directory", location=str(docs))
    kb = await KnowledgeBase.open(settings_with(persist, open_to_all), embedder=embedder)
    try:
        await kb.refresh("handbook")
        assert await seen(kb, group("oc_b")) == {"docs/falcon.md"}  # today's default: everyone
        assert await seen(kb, WEB_CHAT) == {"docs/falcon.md"}
    finally:
        await kb.close()

    only_a = open_to_all.model_copy(update={"audience": ["feishu:oc_a"]})
    kb = await KnowledgeBase.open(settings_with(persist, only_a), embedder=embedder)
    try:
        assert await seen(kb, group("oc_a")) == {"docs/falcon.md"}
        assert await seen(kb, group("oc_b")) == set()
        assert await seen(kb, direct("ou_bob")) == set()
        assert await seen(kb, WEB_CHAT) == set()
        assert await seen(kb, None) == {"docs/falcon.md"}
    finally:
        await kb.close()


async def test_a_platform_source_document_with_no_permissions_is_shown_to_nobody(
    perms_kb: tuple[KnowledgeBase, Perms],
) -> None:
    kb, _ = perms_kb
    readers = [group("oc_a"), group("oc_b"), direct("ou_ada"), WEB_CHAT]
    for reader in readers:
        assert "salary" not in await seen(kb, reader)


def test_audience_settings_are_checked_with_the_fix_in_words() -> None:
    with pytest.raises(ValueError, match="is not understood"):
        SourceSettings(name="s", kind="directory", location="x", audience=["chat A"])
    with pytest.raises(ValueError, match="choose one"):
        SourceSettings(
            name="s", kind="directory", location="x", audience=["slack:C1"], permissions="platform"
        )
    with pytest.raises(ValueError, match="one whole tenant"):
        SourceSettings(
            name="s", kind="directory", location="x", audience=["feishu:tenant:a", "slack:tenant:b"]
        )
    source = SourceSettings(name="s", kind="directory", location="x", audience="everyone")
    assert source.own_audience().everyone


def test_audiences_in_words_and_unreadable_ones_fail_closed() -> None:
    assert describe(EVERYONE) == "全员 / everyone"
    assert describe(Audience(tenant=TENANT)) == "租户 tk1 全员 / everyone in tenant"
    assert describe(Audience(principals=frozenset({CHAT_A}))) == "群 oc_a / chat oc_a"
    assert describe(Audience()) == "无人 / nobody (permissions unknown)"
    assert load({"principals": "feishu:chat:oc_a"}) == Audience()  # not a list: nobody
    assert load(None) == Audience()
    shared = Audience(tenant=TENANT, principals=frozenset({CHAT_A, WEB}))
    assert load(dump(shared)) == shared
    assert parse(["feishu:oc_a", "feishu:tenant:tk1"]) == Audience(
        tenant=TENANT, principals=frozenset({CHAT_A})
    )
