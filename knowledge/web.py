"""Web sources: one page by URL, or a site's pages by its sitemap.

Pages are fetched with httpx and reduced to their main text (trafilatura). A sitemap crawl stays
on the sitemap's own site, honours robots.txt (user agent "teambot"), takes at most `max_pages`
pages, fetches `concurrency` at a time, and gives every request `timeout` seconds.
"""

from __future__ import annotations

import asyncio
import email.utils
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from urllib.parse import urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import httpx

from knowledge.config import SourceSettings
from knowledge.loaders import LoadError, selected
from knowledge.parsing import parse_bytes
from knowledge.types import Document

USER_AGENT = "teambot"
_SITEMAP_DEPTH = 3  # sitemap index -> sitemap -> ...
_CONTENT_KINDS = {
    "text/html": "html",
    "application/xhtml+xml": "html",
    "application/pdf": "pdf",
    "text/markdown": "markdown",
    "text/plain": "text",
}


class SourceError(Exception):
    """The source as a whole cannot be read (folder missing, sitemap unreachable)."""


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


async def read_url(source: SourceSettings) -> AsyncIterator[tuple[str, Document | str]]:
    """The single page of a `url` source."""
    async with client(source) as http:
        try:
            yield source.location, await fetch_page(http, source.location)
        except LoadError as exc:
            raise SourceError(f"{source.location}: {exc}") from exc


async def read_sitemap(
    source: SourceSettings, on_total: Callable[[int], None]
) -> AsyncIterator[tuple[str, Document | str]]:
    """Every allowed page listed in a sitemap, as (url, document or error)."""
    sitemap = source.location
    if not urlsplit(sitemap).path.strip("/"):
        sitemap = urljoin(sitemap, "/sitemap.xml")
    async with client(source) as http:
        robots = await _robots(http, sitemap)
        pages = await _sitemap_urls(http, sitemap, _SITEMAP_DEPTH)
        site = _site(sitemap)
        chosen: list[tuple[str, datetime | None]] = []
        for url, lastmod in pages:
            if _site(url) != site or not selected(url, source.include, source.exclude):
                continue
            if not robots.can_fetch(USER_AGENT, url):
                continue
            chosen.append((url, lastmod))
            if len(chosen) >= source.max_pages:
                break
        on_total(len(chosen))
        gate = asyncio.Semaphore(source.concurrency)

        async def one(url: str, lastmod: datetime | None) -> tuple[str, Document | str]:
            async with gate:
                try:
                    return url, await fetch_page(http, url, lastmod)
                except LoadError as exc:
                    return url, str(exc)

        tasks = [asyncio.create_task(one(url, lastmod)) for url, lastmod in chosen]
        try:
            for task in asyncio.as_completed(tasks):
                yield await task
        finally:
            for task in tasks:
                task.cancel()


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
