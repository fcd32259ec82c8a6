"""Feishu wiki, drive and doc sources through lark-oapi against the fake Open API: listed with
paging, read only where the edit time moved, removed only after a complete listing, cited with
a link holding the node token, with errors that say what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.feishu.config import FeishuSettings
from adapters.feishu.documents import Watch, feishu_kinds, parse_doc, parse_folder, parse_wiki
from adapters.feishu.documents.blocks import to_markdown
from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings, builtin_kinds
from knowledge.types import EVERYONE, Audience
from tests.fakes.feishu import RATE_LIMITED, FakeFeishu
from tests.fakes.feishu_docs import Node, blocks_of
from tests.helpers import kb_settings

SPACE = "7034502641455497244"
PRINTER = "# Printers\n\n## Third floor\n\nThe third-floor printer is called Kestrel.\n"
LEAVE = "# 年假\n\n## 天数\n\n员工每年有十五天年假，请向经理申请。\n"
VPN = "# VPN\n\nThe VPN gateway is vpn.acme.example, port 443.\n"


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


def feishu(fake: FakeFeishu) -> FeishuSettings:
    return FeishuSettings(
        app_id=fake.app_id, app_secret=SecretStr(fake.app_secret), domain=fake.url
    )


@pytest.fixture
async def kb(fake: FakeFeishu, embedder: Embedder, tmp_path: Path) -> AsyncIterator[KnowledgeBase]:
    kinds = builtin_kinds()
    for kind in feishu_kinds(feishu(fake), Watch()):
        kinds.register(kind)
    settings: KnowledgeSettings = kb_settings(tmp_path / "chroma")
    base = await KnowledgeBase.open(settings, embedder=embedder, kinds=kinds)
    yield base
    await base.close()


def wiki_source(location: str = SPACE, **options: Any) -> SourceSettings:
    return SourceSettings(name="wiki", kind="feishu_wiki", location=location, **options)


def content_calls(fake: FakeFeishu) -> list[str]:
    return [c.path.split("/")[5] for c in fake.calls_to("GET", r".*/documents/\w+/blocks")]


def handbook(fake: FakeFeishu) -> dict[str, Node]:
    docs = fake.docs
    top = docs.page(SPACE, "IT", "# IT\n\nWhere the IT team keeps its notes.\n")
    return {
        "top": top,
        "printer": docs.page(SPACE, "Printers", PRINTER, parent=top.node_token),
        "vpn": docs.page(SPACE, "VPN", VPN, parent=top.node_token),
        "leave": docs.page(SPACE, "年假", LEAVE),
        "sheet": docs.page(SPACE, "Budget", "", obj_type="sheet"),
    }


async def test_a_wiki_space_is_cited_with_its_node_link_and_follows_edits_and_deletions(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    pages = handbook(fake)
    await kb.add_source(wiki_source())
    first = await kb.refresh("wiki")
    assert (first.added, first.result) == (4, "ok"), first  # the sheet is skipped (logged)
    [top] = await kb.retriever.retrieve("What is the third-floor printer called?", k=1)
    node = pages["printer"].node_token
    assert top.location == f"https://acme.feishu.cn/wiki/{node}" and top.title == "Printers"
    assert top.section.endswith("Third floor")  # headings from the blocks became the section
    [zh] = await kb.retriever.retrieve("每年有几天年假？", k=1)
    assert zh.location.endswith(pages["leave"].node_token)

    reads = len(content_calls(fake))
    fake.docs.edit(pages["printer"], PRINTER.replace("Kestrel", "Osprey"))
    edited = await kb.refresh("wiki")
    assert (edited.changed, edited.unchanged) == (1, 3), edited
    assert content_calls(fake)[reads:] == [pages["printer"].obj_token]  # that page alone
    [top] = await kb.retriever.retrieve("What is the third-floor printer called?", k=1)
    assert "Osprey" in top.text

    fake.docs.delete(pages["vpn"])
    gone = await kb.refresh("wiki")
    assert gone.removed == 1
    found = await kb.retriever.retrieve("VPN gateway port", k=4)
    assert all(
        p.location != f"https://acme.feishu.cn/wiki/{pages['vpn'].node_token}" for p in found
    )


async def test_an_unchanged_refresh_reads_no_content_and_lists_in_pages(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    for n in range(120):  # three pages of 50 under the top level
        fake.docs.page(SPACE, f"Note {n}", f"# Note {n}\n\nRoom {n} has a projector.\n")
    await kb.add_source(wiki_source())
    assert (await kb.refresh("wiki")).added == 120
    before = len(fake.calls)
    again = await kb.refresh("wiki")
    calls = fake.calls[before:]
    assert again.unchanged == 120
    assert not [c for c in calls if "/docx/" in c.path]
    assert len([c for c in calls if c.path.endswith("/nodes")]) == 3


async def test_a_subtree_link_reads_only_that_subtree(fake: FakeFeishu, kb: KnowledgeBase) -> None:
    pages = handbook(fake)
    link = f"https://acme.feishu.cn/wiki/{pages['top'].node_token}?from=from_copylink"
    await kb.add_source(wiki_source(parse_wiki(link)))
    report = await kb.refresh("wiki")
    assert report.added == 3  # IT, Printers, VPN; not 年假 nor the sheet


async def test_rate_limit_answers_are_waited_out(fake: FakeFeishu, kb: KnowledgeBase) -> None:
    handbook(fake)
    fake.fail("GET", r".*/wiki/v2/spaces/\d+/nodes", code=RATE_LIMITED, times=2)
    await kb.add_source(wiki_source())
    report = await kb.refresh("wiki")
    assert report.result == "ok" and report.added == 4, report


async def test_a_missing_scope_is_named_and_the_last_good_version_kept(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    pages = handbook(fake)
    await kb.add_source(wiki_source())
    await kb.refresh("wiki")
    fake.docs.edit(pages["printer"], PRINTER.replace("Kestrel", "Osprey"))
    fake.fail("GET", r".*/docx/v1/documents/\w+/blocks", code=99991672)
    report = await kb.refresh("wiki")
    error = report.failed[pages["printer"].node_token]
    assert "scope docx:document:readonly missing" in error, error
    [top] = await kb.retriever.retrieve("What is the third-floor printer called?", k=1)
    assert "Kestrel" in top.text  # the last good version still answers


async def test_a_space_the_app_is_not_in_says_so_and_removes_nothing(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    handbook(fake)
    await kb.add_source(wiki_source())
    await kb.refresh("wiki")
    fake.fail("GET", r".*/wiki/v2/spaces/\d+/nodes", code=131006)
    report = await kb.refresh("wiki")
    assert report.result == "failed" and report.removed == 0
    assert "the app is not a member of this wiki space: add it as a collaborator" in (
        report.error.replace(" (wiki/v2 nodes list: code 131006)", "")
    ), report.error


async def test_a_page_deleted_mid_listing_fails_alone_and_goes_next_time(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    pages = handbook(fake)
    fake.docs.vanishing.add(pages["vpn"].obj_token)
    await kb.add_source(wiki_source())
    report = await kb.refresh("wiki")
    assert report.added == 3 and "next refresh removes it" in report.failed[pages["vpn"].node_token]
    again = await kb.refresh("wiki")
    assert again.result == "ok" and pages["vpn"].node_token not in again.failed


async def test_platform_permissions_become_each_documents_audience(
    fake: FakeFeishu, kb: KnowledgeBase
) -> None:
    pages = handbook(fake)
    fake.docs.share(pages["printer"], chats=("oc_chat_a",), users=("ou_alice",))
    fake.docs.share(pages["leave"], link="tenant_readable")
    fake.docs.share(pages["top"], link="anyone_readable")
    kinds = kb.kinds
    reader = kinds.build(wiki_source(permissions="platform"))
    refs = {ref.uri: ref async for ref in reader.documents()}
    await reader.aclose()
    assert refs[pages["printer"].node_token].audience == Audience(
        principals=frozenset({"feishu:chat:oc_chat_a", "feishu:user:ou_alice"})
    )
    assert refs[pages["leave"].node_token].audience == Audience(tenant="feishu:tenant_fake")
    assert refs[pages["top"].node_token].audience == EVERYONE
    assert refs[pages["vpn"].node_token].audience == Audience()  # unreadable: nobody


async def test_a_drive_folder_and_a_single_doc(fake: FakeFeishu, kb: KnowledgeBase) -> None:
    docs = fake.docs
    docs.folders["fldcnTeam01"] = []
    docs.page("", "Printers", PRINTER, folder="fldcnTeam01")
    docs.page("", "faq.md", "# FAQ\n\nLunch is at noon.\n", obj_type="file", folder="fldcnTeam01")
    docs.page("", "Budget", "", obj_type="bitable", folder="fldcnTeam01")
    folder = parse_folder("https://acme.feishu.cn/drive/folder/fldcnTeam01")
    await kb.add_source(SourceSettings(name="drive", kind="feishu_drive", location=folder))
    report = await kb.refresh("drive")
    assert (report.added, report.result) == (2, "ok"), report  # the base is skipped (logged)
    single = docs.page(SPACE, "VPN", VPN)
    location = parse_doc(f"https://acme.feishu.cn/docx/{single.obj_token}")
    await kb.add_source(SourceSettings(name="one", kind="feishu_doc", location=location))
    assert (await kb.refresh("one")).added == 1
    [top] = await kb.retriever.retrieve("VPN gateway port", k=1)
    assert top.location == f"https://acme.feishu.cn/docx/{single.obj_token}"


def test_pasted_links_become_locations() -> None:
    assert parse_wiki("https://acme.feishu.cn/wiki/settings/7034502641455497244") == SPACE
    assert parse_wiki("wikcnA1b2C3d4") == "wikcnA1b2C3d4"
    assert parse_doc("https://acme.larksuite.com/wiki/wikcnA1b2C3d4") == "wiki/wikcnA1b2C3d4"
    with pytest.raises(ValueError, match="feishu_drive"):
        parse_doc("https://acme.feishu.cn/sheets/shtcnA1b2C3d4")
    with pytest.raises(ValueError, match=r"paste e\.g\."):
        parse_folder("https://acme.feishu.cn/base/abc")


def test_docx_blocks_keep_headings_lists_and_tables() -> None:
    blocks = blocks_of("doc1", "T", "# Setup\n- one\n## Details\nplain words")
    table = {
        "block_id": "t",
        "parent_id": "doc1",
        "block_type": 31,
        "children": ["c1", "c2"],
        "table": {"property": {"row_size": 1, "column_size": 2}},
    }
    cells = [{"block_id": c, "block_type": 32, "children": [f"{c}t"]} for c in ("c1", "c2")]
    texts = [
        {"block_id": f"{c}t", "block_type": 2, "text": {"elements": [{"text_run": {"content": c}}]}}
        for c in ("c1", "c2")
    ]
    blocks[0]["children"].append("t")
    markdown = to_markdown([*blocks, table, *cells, *texts])
    assert markdown.splitlines()[:3] == ["# Setup", "", "- one"]
    assert "## Details" in markdown and "| c1 | c2 |" in markdown
