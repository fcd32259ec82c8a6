"""The notion kind through notion-client against a fake Notion API over HTTP: a page tree and
a database are listed with last_edited_time, only edited pages are read, headings survive, a
page that is not shared is explained, and 429s are ridden out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.sources.notion import parse_location
from tests.fakes.notion import TOKEN, FakeNotion, Page, block, rich
from tests.knowledge.counting import counting_kinds

ROOT = "11111111-1111-1111-1111-111111111111"
VPN = "22222222-2222-2222-2222-222222222222"
PRINTER = "33333333-3333-3333-3333-333333333333"
FAQ_DB = "44444444-4444-4444-4444-444444444444"
ROW = "55555555-5555-5555-5555-555555555555"
LATER = "2026-12-05T09:30:00.000Z"


@pytest.fixture
def notion(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeNotion]:
    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    fake = FakeNotion().start()
    fake.pages = {
        ROOT: Page("Handbook", [block("paragraph", "Everything about the office.")]),
        VPN: Page(
            "VPN",
            [
                block("heading_1", "Connecting"),
                block("paragraph", "The VPN gateway is vpn.example.com on port 443."),
                block("bulleted_list_item", "Clients", [block("bulleted_list_item", "WireGuard")]),
            ],
            parent=ROOT,
        ),
        PRINTER: Page(
            "Printer",
            [block("toggle", "Where", [block("paragraph", "The third-floor printer is Kestrel.")])],
            parent=ROOT,
        ),
        ROW: Page(
            "Coffee machine",
            [block("paragraph", "Facilities fixes the coffee machine, extension 4242.")],
            parent=FAQ_DB,
            properties={"Team": {"id": "t", "type": "select", "select": {"name": "Facilities"}}},
        ),
    }
    fake.databases = {FAQ_DB: ROOT}
    yield fake
    fake.stop()


@pytest.fixture
def reads() -> list[str]:
    return []


@pytest.fixture
async def base(
    settings: KnowledgeSettings, embedder: Embedder, reads: list[str], tmp_path: Path
) -> AsyncIterator[KnowledgeBase]:
    kinds = counting_kinds("notion", reads, tmp_path / "data")
    kb = await KnowledgeBase.open(settings, embedder=embedder, kinds=kinds)
    yield kb
    await kb.close()


def tree(notion: FakeNotion, location: str = ROOT, **keys: Any) -> SourceSettings:
    return SourceSettings(
        name="notion", kind="notion", location=location, **{"api_url": notion.url, **keys}
    )


async def test_a_page_tree_is_read_by_edit_time_and_removed_pages_leave(
    base: KnowledgeBase, notion: FakeNotion, reads: list[str]
) -> None:
    first = await base.ingestor.refresh(tree(notion))
    assert (first.added, first.result) == (4, "ok"), first.summary()
    [top] = await base.retriever.retrieve("What is the VPN gateway address?", k=1)
    assert (top.title, top.section) == ("VPN", "VPN > Connecting")
    assert top.location.startswith("https://www.notion.so/VPN-2222")
    [row] = await base.retriever.retrieve("Who fixes the coffee machine?", k=1)
    assert "4242" in row.text and "Team: Facilities" in row.text

    reads.clear()
    notion.pages[PRINTER] = Page(
        "Printer", [block("paragraph", "The third-floor printer is now Osprey.")], LATER, ROOT
    )
    notion.throttle = 2  # rate limited on the way: the client waits Retry-After and retries
    notion.requests.clear()
    second = await base.ingestor.refresh(tree(notion))
    assert (second.changed, second.unchanged, reads) == (1, 3, [PRINTER]), second.summary()
    assert sum(r.startswith("GET /v1/databases/") for r in notion.requests) >= 3  # 429, 429, 404

    def walked(page: str) -> int:  # first pages of a page's blocks fetched (the next pages
        # of a long page would count again)
        return sum(
            f"/v1/blocks/{page}/children" in r and "start_cursor" not in r for r in notion.requests
        )

    # the listing walks every page's blocks once; only the edited page's are read again
    assert (walked(PRINTER), walked(VPN)) == (2, 1)
    [top] = await base.retriever.retrieve("third-floor printer name", k=1)
    assert "Osprey" in top.text

    del notion.pages[VPN]
    third = await base.ingestor.refresh(tree(notion))
    assert third.removed == 1
    assert all(p.title != "VPN" for p in await base.retriever.retrieve("VPN gateway", k=5))


async def test_a_database_lists_its_rows(base: KnowledgeBase, notion: FakeNotion) -> None:
    report = await base.ingestor.refresh(tree(notion, FAQ_DB))
    assert (report.added, report.result) == (1, "ok"), report.summary()


async def test_missing_access_is_explained_and_removes_nothing(
    base: KnowledgeBase, notion: FakeNotion
) -> None:
    await base.ingestor.refresh(tree(notion))
    notion.unshared.add(ROOT)
    hidden = await base.ingestor.refresh(tree(notion))
    assert hidden.result == "failed" and hidden.removed == 0
    assert "share the page or database with the integration" in hidden.error
    notion.unshared.clear()
    notion.token = "ntn_rotated"
    refused = await base.ingestor.refresh(tree(notion))
    assert "NOTION_TOKEN" in refused.error and "my-integrations" in refused.error
    notion.token = TOKEN
    notion.pages[VPN].edited = LATER
    notion.restricted.add("b-222222-2")  # the VPN page's nested list: the integration may not
    partial = await base.ingestor.refresh(tree(notion))
    assert partial.result == "partial" and "Read content" in partial.failed[VPN]
    [top] = await base.retriever.retrieve("What is the VPN gateway address?", k=1)
    assert top.title == "VPN"  # its last good version still answers


def test_a_pasted_link_becomes_the_id() -> None:
    link = "https://www.notion.so/acme/Handbook-11111111111111111111111111111111?pvs=4"
    assert parse_location(link) == ROOT
    assert parse_location(ROOT.replace("-", "")) == ROOT
    with pytest.raises(ValueError, match="Copy link"):
        parse_location("https://www.notion.so/acme")


def test_rich_text_keeps_inline_code() -> None:
    from knowledge.sources.notion_blocks import rich_text

    items = [*rich("Run "), {"plain_text": "make", "annotations": {"code": True}}]
    assert rich_text(items) == "Run `make`"


async def test_an_unreachable_api_is_said(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from knowledge.sources import SourceError, builtin_kinds
    from tests.helpers import closed_port

    monkeypatch.setenv("NOTION_TOKEN", TOKEN)
    spec = SourceSettings(
        name="n", kind="notion", location=ROOT, api_url=f"http://127.0.0.1:{closed_port()}"
    )  # type: ignore[call-arg]
    reader = builtin_kinds(tmp_path).build(spec)
    with pytest.raises(SourceError, match="unreachable: ConnectError"):
        [ref async for ref in reader.documents()]
    await reader.aclose()
