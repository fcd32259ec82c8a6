"""The `url` and `sitemap` kinds: one page by URL, or a site's pages by its sitemap.

Pages are fetched with httpx and reduced to their main text (trafilatura). A sitemap crawl stays
on the sitemap's own site, honours robots.txt (user agent "teambot"), takes at most `max_pages`
pages, fetches `concurrency` at a time, and gives every request `timeout` seconds.
"""

from __future__ import annotations

import email.utils
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.loaders import selected
from knowledge.parsing import parse_bytes
from knowledge.sources.base import DocumentRef, NoOptions, SourceKind
from knowledge.types import Document

__all__ = ["SITEMAP", "URL", "PageReader", "SitemapReader", "fetch_page"]

USER_AGENT = "teambot"
_SITEMAP_DEPTH = 3  # sitemap index -> sitemap -> ...
_CONTENT_KINDS = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "text/markdown": "markdown",
    "text/plain": "text",
}


def client(source: SourceSettings) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(source.timeout),
        follow_redirects=True,
        headers={"User-Agent": f"{USER_AGENT}/1.0 (+knowledge refresh)"},
        limits=httpx.Limits(max_connections=source.concurrency),
    )


async def fetch_page(
    http: httpx.AsyncClient, url: str, lastmod: datetime | None = None
) -> Document:
    """One page as a `Document` (uri and url are the URL); `LoadError` on any failure."""
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        raise LoadError(f"fetch failed: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise LoadError(f"HTTP {response.status_code}")
    content_type = response.headers.get("content-type", "text/html").split(";")[0].strip().lower()
    kind = _CONTENT_KINDS.get(content_type)
    if kind is None:
        raise LoadError(f"unsupported content type {content_type!r}")
    modified = _http_date(response.headers.get("last-modified")) or lastmod
    path = urlsplit(url).path.rstrip("/")
    name = path.rsplit("/", 1)[-1] or urlsplit(url).hostname or url
    return await parse_bytes(
        response.content, kind, uri=url, name=name, modified_at=modified, url=url
    )


class PageReader:
    """The single page of a `url` source; its version is unknown, so it is fetched each time
    and its content hash decides whether anything is re-embedded."""

    def __init__(self, source: SourceSettings) -> None:
        self._source = source
        self._http = client(source)

    async def documents(self) -> AsyncIterator[DocumentRef]:
        yield DocumentRef(uri=self._source.location, url=self._source.location)

    async def read(self, ref: DocumentRef) -> Document:
        try:
            return await fetch_page(self._http, ref.uri)
        except LoadError as exc:  # the one page is the whole source: keep it, report the run
            raise SourceError(f"{ref.uri}: {exc}") from exc

    async def aclose(self) -> None:
        await self._http.aclose()


class SitemapReader:
    """Every allowed page listed in a sitemap (same site, robots.txt, `max_pages`); a page's
    version is its `lastmod` when the sitemap gives one."""

    def __init__(self, source: SourceSettings) -> None:
        self._source = source
        self._http = client(source)

    async def documents(self) -> AsyncIterator[DocumentRef]:
        source = self._source
        sitemap = source.location
        if not urlsplit(sitemap).path.strip("/"):
            sitemap = urljoin(sitemap, "/sitemap.xml")
        robots = await _robots(self._http, sitemap)
        pages = await _sitemap_urls(self._http, sitemap, _SITEMAP_DEPTH)
        site = _site(sitemap)
        taken = 0
        for url, lastmod in pages:
            if _site(url) != site or not selected(url, source.include, source.exclude):
                continue
            if not robots.can_fetch(USER_AGENT, url):
                continue
            yield DocumentRef(
                uri=url,
                url=url,
                version=lastmod.isoformat() if lastmod else "",
                modified_at=lastmod,
            )
            taken += 1
            if taken >= source.max_pages:
                break

    async def read(self, ref: DocumentRef) -> Document:
        return await fetch_page(self._http, ref.uri, ref.modified_at)

    async def aclose(self) -> None:
        await self._http.aclose()


def _page(source: SourceSettings, _: object) -> PageReader:
    return PageReader(source)


def _sitemap(source: SourceSettings, _: object) -> SitemapReader:
    return SitemapReader(source)


URL = SourceKind(
    name="url",
    label="网页 / Web page",
    location_help="one page's address, e.g. https://intranet.example.com/faq",
    build=_page,
    options=NoOptions,
)
SITEMAP = SourceKind(
    name="sitemap",
    label="网站地图 / Sitemap",
    location_help="a site's sitemap, e.g. https://support.example.com/sitemap.xml",
    build=_sitemap,
    options=NoOptions,
)


async def _robots(http: httpx.AsyncClient, url: str) -> RobotFileParser:
    parts = urlsplit(url)
    robots = RobotFileParser()
    try:
        response = await http.get(f"{parts.scheme}://{parts.netloc}/robots.txt")
    except httpx.HTTPError as exc:
        raise SourceError(f"robots.txt of {parts.netloc} unreachable: {exc}") from exc
    if response.status_code in (401, 403):
        robots.parse(["User-agent: *", "Disallow: /"])
    elif response.status_code == 200:
        robots.parse(response.text.splitlines())
    else:
        robots.parse([])  # no robots.txt: everything is allowed
    return robots


async def _sitemap_urls(
    http: httpx.AsyncClient, url: str, depth: int
) -> list[tuple[str, datetime | None]]:
    try:
        response = await http.get(url)
    except httpx.HTTPError as exc:
        raise SourceError(f"sitemap {url} unreachable: {type(exc).__name__}: {exc}") from exc
    if response.status_code != 200:
        raise SourceError(f"sitemap {url}: HTTP {response.status_code}")
    try:
        root = ET.fromstring(response.content)
    except ET.ParseError as exc:
        raise SourceError(f"sitemap {url} is not valid XML: {exc}") from exc
    found: list[tuple[str, datetime | None]] = []
    tag = root.tag.rsplit("}", 1)[-1]
    for entry in root:
        loc = _child(entry, "loc")
        if not loc:
            continue
        loc = urljoin(url, loc)
        if tag == "sitemapindex":
            if depth > 1 and _site(loc) == _site(url):
                found.extend(await _sitemap_urls(http, loc, depth - 1))
        else:
            found.append((loc, _iso_date(_child(entry, "lastmod"))))
    return list(dict.fromkeys(found))


def _child(entry: ET.Element, name: str) -> str:
    for child in entry:
        if child.tag.rsplit("}", 1)[-1] == name and child.text:
            return child.text.strip()
    return ""


def _site(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


def _iso_date(text: str) -> datetime | None:
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def _http_date(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return email.utils.parsedate_to_datetime(text).astimezone(UTC)
    except (TypeError, ValueError):
        return None
