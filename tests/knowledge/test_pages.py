"""url and sitemap sources against a fake site over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from knowledge import KnowledgeBase, SourceSettings
from knowledge.sources import LoadError, SourceError, builtin_kinds
from knowledge.types import Document
from tests.fakes.website import FakeSite


@pytest.fixture
def site() -> Iterator[FakeSite]:
    with FakeSite() as fake:
        for n in range(6):
            fake.html(
                f"/kb/page{n}", f"Page {n}", f"<p>Article number {n} explains the VPN gateway.</p>"
            )
        fake.html("/private/secret", "Secret", "<p>Do not index this page.</p>")
        fake.pages["/kb/broken"] = 500
        fake.pages["/robots.txt"] = ("text/plain", b"User-agent: *\nDisallow: /private/\n")
        base = fake.base_url
        fake.sitemap("/sitemap.xml", ["/sitemap-kb.xml", "/sitemap-other.xml"], index=True)
        fake.sitemap(
            "/sitemap-kb.xml",
            [f"{base}/kb/page{n}" for n in range(6)]
            + [f"{base}/private/secret", f"{base}/kb/broken", "http://elsewhere.example.com/kb/x"],
        )
        fake.sitemap("/sitemap-other.xml", [f"{base}/kb/page0"])
        yield fake


def _sitemap(site: FakeSite, **extra: object) -> SourceSettings:
    return SourceSettings(
        name="site",
        kind="sitemap",
        location=f"{site.base_url}/sitemap.xml",
        **extra,  # type: ignore[arg-type]
    )


async def _read(source: SourceSettings) -> dict[str, Document | str]:
    """List the source, then read every listed document (errors as their text)."""
    reader = builtin_kinds().build(source)
    found: dict[str, Document | str] = {}
    try:
        async for ref in reader.documents():
            try:
                found[ref.uri] = await reader.read(ref)
            except LoadError as exc:
                found[ref.uri] = str(exc)
    finally:
        await reader.aclose()
    return found


async def test_sitemap_crawl_is_same_site_robots_aware_and_reports_failures(site: FakeSite) -> None:
    found = await _read(_sitemap(site))

    base = site.base_url
    assert set(found) == {f"{base}/kb/page{n}" for n in range(6)} | {f"{base}/kb/broken"}
    assert found[f"{base}/kb/broken"] == "HTTP 500"
    page = found[f"{base}/kb/page3"]
    assert isinstance(page, Document)
    assert (page.title, page.url) == ("Page 3", f"{base}/kb/page3")
    assert "Article number 3" in page.text
    assert "/private/secret" not in site.requests  # robots.txt said no
    assert site.requests.count("/kb/page0") == 1  # listed twice, fetched once


async def test_page_cap_patterns_and_bounded_concurrency(site: FakeSite, kb: KnowledgeBase) -> None:
    site.delay = 0.05
    source = _sitemap(site, include=["*/kb/page*"], exclude=["*/page5"], max_pages=4, concurrency=2)
    found = await _read(source)
    assert len(found) == 4 and all("/kb/page" in u and not u.endswith("5") for u in found)
    report = await kb.ingestor.refresh(source)  # the ingestor reads several pages at once
    assert report.added == 4
    assert site.peak == 2


async def test_unreachable_sitemap_fails_the_source(site: FakeSite) -> None:
    with pytest.raises(SourceError, match="HTTP 404"):
        await _read(SourceSettings(name="s", kind="sitemap", location=f"{site.base_url}/nope.xml"))


async def test_url_source_and_timeouts(site: FakeSite) -> None:
    page = await _read(SourceSettings(name="u", kind="url", location=f"{site.base_url}/kb/page1"))
    assert list(page) == [f"{site.base_url}/kb/page1"]
    site.delay = 1.0
    with pytest.raises(SourceError, match="ReadTimeout"):
        await _read(
            SourceSettings(name="u", kind="url", location=f"{site.base_url}/kb/page1", timeout=0.2)
        )


async def test_sitemap_refresh_indexes_pages_with_their_urls(
    site: FakeSite, kb: KnowledgeBase
) -> None:
    report = await kb.ingestor.refresh(_sitemap(site, include=["*/kb/page[0-2]"]))
    assert (report.added, len(report.failed)) == (3, 0)
    [top] = await kb.retriever.retrieve("Article number 2 VPN gateway", k=1)
    assert top.location == f"{site.base_url}/kb/page2"

    del site.pages["/kb/page2"]  # gone from the site (404) but still in the sitemap: kept
    site.sitemap("/sitemap-kb.xml", [f"{site.base_url}/kb/page{n}" for n in (0, 2)])
    report = await kb.ingestor.refresh(_sitemap(site, include=["*/kb/page[0-2]"]))
    assert (report.unchanged, report.removed, list(report.failed)) == (
        1,
        1,
        [f"{site.base_url}/kb/page2"],
    )
