"""The confluence kind against a fake Confluence over HTTP: a space pages through, reads only
pages whose version changed, keeps headings, takes restrictions as the audience, rides out
429s, and says what to do on 401/403/404."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.sources import builtin_kinds
from knowledge.sources.confluence import parse_location
from knowledge.sources.markup import storage_to_markdown
from knowledge.types import Audience
from tests.fakes.confluence import EMAIL, TOKEN, FakeConfluence, Page
from tests.knowledge.counting import counting_kinds

VPN = (
    "<h2>Connecting</h2><p>The VPN gateway is <strong>vpn.example.com</strong> on port 443.</p>"
    '<ac:structured-macro ac:name="code"><ac:parameter ac:name="language">bash</ac:parameter>'
    "<ac:plain-text-body><![CDATA[openvpn --config corp.ovpn]]></ac:plain-text-body>"
    "</ac:structured-macro>"
)
PRINTER = "<h2>Printers</h2><p>The third-floor printer is named Kestrel.</p>"
PAY = "<h2>Salaries</h2><p>Salary bands are reviewed every April by the pay committee.</p>"


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeConfluence]:
    monkeypatch.setenv("CONFLUENCE_TOKEN", TOKEN)
    fake = FakeConfluence().start()
    fake.pages = {
        "101": Page("VPN", VPN),
        "102": Page("Printer", PRINTER),
        "103": Page("HR", "<p>People matters.</p>", groups=["hr-team"], users=["557058:a1"]),
        "104": Page("Pay", PAY, ancestors=["103"], groups=["hr-team", "finance"]),
    }
    yield fake
    fake.stop()


@pytest.fixture
def reads() -> list[str]:
    return []


@pytest.fixture
async def base(
    settings: KnowledgeSettings, embedder: Embedder, reads: list[str], tmp_path: Path
) -> AsyncIterator[KnowledgeBase]:
    kinds = counting_kinds("confluence", reads, tmp_path / "data")
    kb = await KnowledgeBase.open(settings, embedder=embedder, kinds=kinds)
    yield kb
    await kb.close()


def space(site: FakeConfluence, **keys: Any) -> SourceSettings:
    return SourceSettings(
        name="wiki",
        kind="confluence",
        location="ENG",
        **{"base_url": site.base_url, "email": EMAIL, **keys},
    )


async def test_a_space_is_paged_read_by_version_and_deleted_pages_leave(
    base: KnowledgeBase, site: FakeConfluence, reads: list[str]
) -> None:
    first = await base.ingestor.refresh(space(site))
    assert (first.added, first.result) == (4, "ok"), first.summary()
    assert sum("/rest/api/content?" in r for r in site.requests) == 2  # two pages of listing
    [top] = await base.retriever.retrieve("What is the VPN gateway address?", k=1)
    assert (top.title, top.section) == ("VPN", "VPN > Connecting")
    assert top.location == f"{site.base_url}/spaces/ENG/pages/101"

    reads.clear()
    site.pages["102"] = Page("Printer", PRINTER.replace("Kestrel", "Osprey"), version=2)
    site.throttle = 2  # rate limited twice on the way: retried after Retry-After
    second = await base.ingestor.refresh(space(site))
    assert (second.changed, second.unchanged, reads) == (1, 3, ["102"]), second.summary()
    [top] = await base.retriever.retrieve("third-floor printer name", k=1)
    assert "Osprey" in top.text

    del site.pages["101"]
    third = await base.ingestor.refresh(space(site))
    assert third.removed == 1
    assert all(p.title != "VPN" for p in await base.retriever.retrieve("VPN gateway", k=5))


async def test_restrictions_become_the_audience(site: FakeConfluence, tmp_path: Path) -> None:
    reader = builtin_kinds(tmp_path).build(space(site))
    refs = {ref.uri: ref async for ref in reader.documents()}
    await reader.aclose()
    assert refs["101"].audience is None  # unrestricted: the source's audience
    assert refs["103"].audience == Audience(
        principals=frozenset({"confluence:group:hr-team", "confluence:user:557058:a1"})
    )
    # restricted at two levels: only who is named at both
    assert refs["104"].audience == Audience(principals=frozenset({"confluence:group:hr-team"}))


async def test_attachments_are_documents_of_their_own(
    base: KnowledgeBase, site: FakeConfluence
) -> None:
    csv = b'question,answer\nWho fixes the coffee machine?,"Facilities, extension 4242."\n'
    site.pages["102"].attachments["faq.csv"] = (1, csv)
    site.pages["102"].attachments["photo.png"] = (1, b"\x89PNG")
    report = await base.ingestor.refresh(space(site, attachments=True))
    assert report.added == 5, report.summary()  # four pages and the CSV, not the image
    [top] = await base.retriever.retrieve("Who fixes the coffee machine?", k=1)
    assert "4242" in top.text


async def test_permission_errors_say_what_to_do_and_remove_nothing(
    base: KnowledgeBase, site: FakeConfluence, reads: list[str]
) -> None:
    await base.ingestor.refresh(space(site))
    site.pages["102"] = Page("Printer", PRINTER, version=3)
    site.forbidden.add("102")
    partial = await base.ingestor.refresh(space(site))
    assert partial.result == "partial" and "View permission" in partial.failed["102"]

    site.token = "rotated"
    refused = await base.ingestor.refresh(space(site))
    assert refused.result == "failed" and "HTTP 401" in refused.error
    assert "CONFLUENCE_TOKEN" in refused.error
    site.token = TOKEN
    site.listing_status = 403
    denied = await base.ingestor.refresh(space(site))
    assert "HTTP 403" in denied.error and denied.removed == 0
    site.listing_status = 200
    missing = await base.ingestor.refresh(
        SourceSettings(
            name="wiki", kind="confluence", location="NOPE", base_url=site.base_url, email=EMAIL
        )  # type: ignore[call-arg]
    )
    assert "space NOPE not found" in missing.error and "space key" in missing.error
    assert missing.removed == 0
    [top] = await base.retriever.retrieve("What is the VPN gateway address?", k=1)
    assert top.title == "VPN"


def test_a_pasted_link_becomes_the_space_key() -> None:
    assert parse_location("https://acme.atlassian.net/wiki/spaces/ENG/overview") == "ENG"
    assert parse_location("https://acme.atlassian.net/wiki/spaces/ENG/pages/1/VPN") == "ENG"
    assert parse_location("https://confluence.example.com/display/OPS/Home") == "OPS"
    assert parse_location("ENG") == "ENG"
    with pytest.raises(ValueError, match="no space"):
        parse_location("https://acme.atlassian.net/wiki/home")


def test_storage_format_keeps_headings_lists_tables_and_code() -> None:
    text = storage_to_markdown(
        "<h1>Setup</h1><p>Intro</p><ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>"
        "<table><tbody><tr><th>Key</th><th>Value</th></tr><tr><td>port</td><td>443</td></tr>"
        "</tbody></table>" + VPN,
        "Guide",
    )
    assert text.startswith("# Guide\n\n# Setup\n\nIntro")
    assert "- one\n- two\n  - nested" in text
    assert "| Key | Value |\n| --- | --- |\n| port | 443 |" in text
    assert "```\nopenvpn --config corp.ovpn\n```" in text
    assert "bash" not in text  # macro parameters are not text
    assert "**vpn.example.com**" in text
