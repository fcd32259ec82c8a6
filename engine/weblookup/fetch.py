"""Fetch one result page safely and keep its main text.

Strict limits: one deadline for the whole fetch (redirects included), a byte cap (the rest of a
huge page is never read), a redirect cap with every hop checked by the guard before connecting,
HTML and plain text only. Connections go to the address the guard checked (the Host header and
TLS SNI still name the site), so DNS cannot change the answer between check and connect.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from urllib.parse import urljoin

import httpx

from engine.weblookup.guard import Guard, Target

log = logging.getLogger(__name__)
# trafilatura warns "discarding data" for every page too short for it; we fall back quietly.
logging.getLogger("trafilatura").setLevel(logging.ERROR)

_TEXT_TYPES = ("text/html", "application/xhtml+xml", "text/plain")
_USER_AGENT = "teambot-web-lookup/0.1 (+self-hosted team assistant)"
_META_CHARSET = re.compile(rb"""<meta[^>]+charset=["']?([A-Za-z0-9_\-]+)""", re.IGNORECASE)


class FetchError(Exception):
    """The page could not be used (timeout, too many redirects, HTTP error, not text)."""


@dataclass(frozen=True, slots=True)
class Page:
    url: str  # after redirects
    text: str  # main text, whitespace tidied
    truncated: bool = False  # the byte cap cut the download


class Fetcher:
    """Fetches pages through one shared httpx client. `await close()` at shutdown."""

    def __init__(
        self,
        guard: Guard,
        *,
        timeout: float,
        max_bytes: int,
        max_redirects: int,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self._guard = guard
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._max_redirects = max_redirects
        self._own_http = http is None
        # No env proxies: a proxy would resolve names itself and defeat the address check.
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0)),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=8),
        )

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def fetch(self, url: str) -> Page:
        """The page's main text. Raises Refused (guard) or FetchError; never waits past timeout."""
        try:
            async with asyncio.timeout(self._timeout):
                return await self._follow(url)
        except TimeoutError:
            raise FetchError(f"{url}: no complete answer within {self._timeout:g}s") from None

    async def _follow(self, url: str) -> Page:
        current = url
        for _ in range(self._max_redirects + 1):
            target = await self._guard.check(current)  # every hop, before connecting
            request = self._http.build_request(
                "GET",
                _pinned_url(target),
                headers=_headers(target),
                extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
            )
            try:
                response = await self._http.send(request, stream=True)
            except httpx.HTTPError as error:
                raise FetchError(f"{current}: {type(error).__name__}: {error}") from None
            try:
                if response.is_redirect:
                    location = response.headers.get("location", "")
                    if not location:
                        raise FetchError(f"{current}: redirect without a Location")
                    current = urljoin(current, location)
                    continue
                return await self._read(current, response)
            finally:
                await response.aclose()
        raise FetchError(f"{url}: more than {self._max_redirects} redirects")

    async def _read(self, url: str, response: httpx.Response) -> Page:
        if response.status_code != 200:
            raise FetchError(f"{url}: HTTP {response.status_code}")
        content_type = response.headers.get("content-type", "").lower()
        mime = content_type.split(";")[0].strip()
        if mime not in _TEXT_TYPES:
            raise FetchError(f"{url}: {mime or 'no content type'} is not HTML or text")
        declared = response.headers.get("content-length", "")
        truncated = declared.isdigit() and int(declared) > self._max_bytes
        body = bytearray()
        try:
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) >= self._max_bytes:
                    truncated = True
                    del body[self._max_bytes :]
                    break
        except httpx.HTTPError as error:
            if not body:
                raise FetchError(f"{url}: {type(error).__name__}: {error}") from None
            truncated = True  # keep what arrived
        if truncated:
            log.info("web page %s cut at %d bytes", url, self._max_bytes)
        charset = _charset(content_type)
        if mime == "text/plain":
            text = bytes(body).decode(charset or "utf-8", errors="replace")
        else:
            text = await asyncio.to_thread(extract_main_text, bytes(body), charset)
        return Page(url=url, text=tidy(text), truncated=truncated)


def _pinned_url(target: Target) -> str:
    address = f"[{target.address}]" if ":" in target.address else target.address
    return f"{target.scheme}://{address}:{target.port}{target.path}"


def _headers(target: Target) -> dict[str, str]:
    default = 443 if target.scheme == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host
    return {
        "Host": host if target.port == default else f"{host}:{target.port}",
        "User-Agent": _USER_AGENT,
        "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9",
    }


def _charset(content_type: str) -> str | None:
    match = re.search(r"charset=[\"']?([A-Za-z0-9_\-]+)", content_type)
    return match.group(1) if match else None


def tidy(text: str) -> str:
    """Collapse runs of spaces and blank lines."""
    text = re.sub(r"[ \t\r\f\v\u00a0]+", " ", text)
    text = re.sub(r" *\n[ \n]*", "\n", text)
    return text.strip()


def extract_main_text(body: bytes, charset: str | None = None) -> str:
    """The page's main text: trafilatura when installed and it finds some, else a plain fallback."""
    decoded = _decode(body, charset)
    extract: Callable[..., str | None] | None
    try:
        from trafilatura import extract
    except ImportError:  # optional: the fallback below keeps the feature working
        extract = None
    if extract is not None:
        try:
            text = extract(decoded, include_comments=False, include_tables=True, deduplicate=True)
        except Exception as error:  # a parser bug on one odd page must not fail the lookup
            log.debug("trafilatura failed: %r", error)
            text = None
        if text and text.strip():
            return text
    return fallback_text(decoded)


def _decode(body: bytes, charset: str | None) -> str:
    if charset is None:
        meta = _META_CHARSET.search(body[:4096])
        charset = meta.group(1).decode("ascii") if meta else "utf-8"
    try:
        return body.decode(charset, errors="replace")
    except LookupError:
        return body.decode("utf-8", errors="replace")


class _TextParser(HTMLParser):
    """Visible text of an HTML page: no scripts, styles, templates, comments or hidden parts."""

    _SKIP = frozenset({"script", "style", "noscript", "template", "head", "svg", "iframe", "nav"})
    _VOID = frozenset(
        {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr", "param"}
    )  # fmt: skip
    _BLOCK = frozenset(
        {"p", "div", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "section", "article",
         "header", "footer", "pre", "blockquote", "table", "ul", "ol", "dd", "dt"}
    )  # fmt: skip

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._VOID:
            if tag == "br" and not self._skipping:
                self.parts.append("\n")
            return
        style = (dict(attrs).get("style") or "").replace(" ", "").lower()
        hidden = any(name == "hidden" for name, _ in attrs) or "display:none" in style
        if self._skipping or tag in self._SKIP or hidden:
            self._skipping.append(tag)  # nested tags too, so the right end tag closes the skip
        elif tag in self._BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._skipping:  # also closes unclosed tags inside the skipped part
            while self._skipping.pop() != tag:
                pass
        elif tag in self._BLOCK and not self._skipping:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def fallback_text(markup: str) -> str:
    """Visible text of an HTML document with the standard library's parser."""
    parser = _TextParser()
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # malformed markup: take the tags out crudely
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    return "".join(parser.parts)
