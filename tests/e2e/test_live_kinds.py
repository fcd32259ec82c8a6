"""Git, Confluence and Notion sources while `teambot serve` runs, as an operator adds them:
`teambot sources add` makes the running server cite a document, an edit reaches it after
`teambot refresh` (reading only what changed), and a deleted document is no longer cited."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_live_knowledge import Served, serve
from tests.fakes.confluence import EMAIL, FakeConfluence, Page
from tests.fakes.confluence import TOKEN as CONFLUENCE_TOKEN
from tests.fakes.notion import TOKEN as NOTION_TOKEN
from tests.fakes.notion import FakeNotion, block
from tests.fakes.notion import Page as NotionPage
from tests.knowledge.git_repo import Repo

CANTEEN = "When does the canteen serve lunch?"
PARKING = "Where do visitors park?"


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeConfluence, FakeNotion]]:
    confluence, notion = FakeConfluence().start(), FakeNotion().start()
    yield confluence, notion
    confluence.stop()
    notion.stop()


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    sample_index: Path,
    fakes: tuple[FakeConfluence, FakeNotion],
) -> Iterator[Served]:
    workdir = tmp_path_factory.mktemp("kinds")
    process, served = serve(
        workdir / "app",
        sample_index,
        CONFLUENCE_TOKEN=CONFLUENCE_TOKEN,
        NOTION_TOKEN=NOTION_TOKEN,
    )
    try:
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def located(citations: list[dict[str, Any]]) -> set[str]:
    return {str(c["location"]) for c in citations}


def test_a_git_repository(served: Served) -> None:
    repo = Repo(served.workdir / "handbook")
    repo.commit(
        "docs",
        {
            "docs/canteen.md": "# Canteen\n\nThe canteen serves lunch from 11:30 to 13:30.\n",
            "docs/parking.md": "# Parking\n\nVisitors park in garage P2, level -1.\n",
            "src/canteen.md": "# Not docs\n\nThe canteen serves nothing here.\n",
        },
    )
    out = ok(
        served.teambot(
            "sources",
            "add",
            "docs",
            "git",
            str(repo.root),
            "--set",
            "branch=main",
            "--set",
            'paths=["docs/**"]',
        )
    )
    assert "2 added" in out, out
    first = repo.git("rev-parse", "HEAD")[:12]
    served.within(5, CANTEEN, lambda c: f"docs/canteen.md@{first}" in located(c))

    second = repo.commit(
        "longer lunch",
        {"docs/canteen.md": "# Canteen\n\nThe canteen serves lunch from 11:00 to 14:00.\n"},
    )[:12]
    out = ok(served.teambot("refresh", "docs"))
    assert "0 added, 1 changed, 0 removed, 1 unchanged" in out, out
    # the new text is cited at the commit that wrote it; the unchanged file keeps its own
    served.within(5, CANTEEN, lambda c: f"docs/canteen.md@{second}" in located(c))
    assert f"docs/parking.md@{first}" in located(served.cited(PARKING))

    repo.git("rm", "--quiet", "docs/parking.md")
    repo.commit("garage closed")
    out = ok(served.teambot("refresh", "docs"))
    assert "1 removed" in out, out
    served.within(5, PARKING, lambda c: not any("parking.md" in x for x in located(c)))


def test_a_confluence_space(served: Served, fakes: tuple[FakeConfluence, FakeNotion]) -> None:
    site, _ = fakes
    site.pages = {
        "201": Page(
            "Canteen", "<h2>Lunch</h2><p>The canteen serves lunch from 11:30 to 13:30.</p>"
        ),
        "202": Page("Parking", "<h2>Visitors</h2><p>Visitors park in garage P2.</p>"),
        "203": Page("Printer", "<p>The third-floor printer is named Kestrel.</p>"),
    }
    out = ok(
        served.teambot(
            "sources",
            "add",
            "wiki",
            "confluence",
            f"{site.base_url}/spaces/ENG/overview",
            "--set",
            f"base_url={site.base_url}",
            "--set",
            f"email={EMAIL}",
        )
    )
    assert "3 added" in out, out
    page = f"{site.base_url}/spaces/ENG/pages/201"
    served.within(5, CANTEEN, lambda c: page in located(c))

    site.requests.clear()
    site.pages["201"] = Page("Canteen", "<p>The canteen serves lunch from 11:00 to 14:00.</p>", 2)
    out = ok(served.teambot("refresh", "wiki"))
    assert "1 changed, 0 removed, 2 unchanged" in out, out
    assert site.reads() == ["201"]  # only the edited page's body was fetched

    del site.pages["202"]
    out = ok(served.teambot("refresh", "wiki"))
    assert "1 removed" in out, out
    gone = f"{site.base_url}/spaces/ENG/pages/202"
    served.within(5, PARKING, lambda c: gone not in located(c))


def test_a_notion_page_tree(served: Served, fakes: tuple[FakeConfluence, FakeNotion]) -> None:
    _, notion = fakes
    root = "aaaaaaaa-aaaa-aaaa-aaaa-aaaaaaaaaaaa"
    canteen = "bbbbbbbb-bbbb-bbbb-bbbb-bbbbbbbbbbbb"
    parking = "cccccccc-cccc-cccc-cccc-cccccccccccc"
    notion.pages = {
        root: NotionPage("Office", [block("paragraph", "The office handbook.")]),
        canteen: NotionPage(
            "Canteen",
            [block("paragraph", "The canteen serves lunch from 11:30 to 13:30.")],
            parent=root,
        ),
        parking: NotionPage(
            "Parking", [block("paragraph", "Visitors park in garage P2.")], parent=root
        ),
    }
    link = f"https://www.notion.so/acme/Office-{root.replace('-', '')}"
    out = ok(
        served.teambot("sources", "add", "notion", "notion", link, "--set", f"api_url={notion.url}")
    )
    assert "3 added" in out, out
    served.within(5, CANTEEN, lambda c: any("Canteen" in x["location"] for x in c))

    notion.pages[canteen] = NotionPage(
        "Canteen",
        [block("paragraph", "The canteen serves lunch from 11:00 to 14:00.")],
        "2026-12-06T08:00:00.000Z",
        root,
    )
    notion.requests.clear()
    out = ok(served.teambot("refresh", "notion"))
    assert "1 changed, 0 removed, 2 unchanged" in out, out

    def blocks_fetched(page: str) -> int:
        return sum(
            f"/v1/blocks/{page}/children" in r and "start_cursor" not in r for r in notion.requests
        )

    # every page's blocks are walked once for sub-pages; only the edited page's are read again
    assert (blocks_fetched(canteen), blocks_fetched(parking)) == (2, 1)

    del notion.pages[parking]
    out = ok(served.teambot("refresh", "notion"))
    assert "1 removed" in out, out
    served.within(5, PARKING, lambda c: not any("Parking" in x["location"] for x in c))
