"""The `confluence` kind: the pages of one space on Confluence Cloud or Data Center.

Through the REST API both editions share (`/rest/api/content`, with httpx: the few calls
needed do not justify atlassian-python-api, which is synchronous and would need a thread per
call). The listing pages through the space's current pages with their `version.number`
(the version the ingestor compares) and read restrictions; a page's body is read in storage
format only when its version changed, and becomes Markdown with its headings. Attachments
(PDF, Word, …) are optional documents of their own. Rate limits (429) and passing failures are
retried with backoff, honouring Retry-After.

A page's read restrictions, where the API shows them, become its audience ("confluence:user:…",
"confluence:group:…"); a page restricted through several ancestors gets only the principals
named at every level (unknown overlaps fail closed). An unrestricted page keeps the source's
audience.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
from pydantic import Field, field_validator

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.loaders import KINDS
from knowledge.parsing import parse_bytes
from knowledge.sources.base import DocumentRef, SourceKind
from knowledge.sources.http import send
from knowledge.sources.markup import storage_to_markdown
from knowledge.sources.secrets import ENV_NAME, SecretOptions, required
from knowledge.types import Audience, Document

__all__ = ["CONFLUENCE", "ConfluenceOptions", "ConfluenceReader"]

PAGE_SIZE = 100
_EXPAND = (
    "version,ancestors,restrictions.read.restrictions.user,restrictions.read.restrictions.group"
)
_KEY = re.compile(r"^~?[A-Za-z0-9_-]{1,255}$")


class ConfluenceOptions(SecretOptions):
    """`[[knowledge.sources]]` keys of kind confluence."""

    base_url: str = Field(
        description="the site: https://acme.atlassian.net/wiki (Cloud) or "
        "https://confluence.example.com (Data Center)"
    )
    email: str = Field(
        default="", description="Cloud: the account's email (with an API token); '' = a PAT"
    )
    token_env: str = Field(
        default="CONFLUENCE_TOKEN",
        pattern=ENV_NAME,
        description="secret holding the API token (Cloud) or personal access token (Data Center)",
    )
    attachments: bool = Field(default=False, description="also index PDF, Word, … attachments")

    @field_validator("base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError(f"{value!r} is not an http(s) address of a Confluence site")
        return value.rstrip("/")


class ConfluenceReader:
    """One space's pages (and, optionally, their attachments)."""

    def __init__(self, source: SourceSettings, options: ConfluenceOptions) -> None:
        self._source = source
        self._options = options
        self._base = options.base_url
        self._http: httpx.AsyncClient | None = None

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            options = self._options
            token = required(
                options.token_env,
                "token_env",
                "a Confluence API token (Cloud: id.atlassian.com → Security → API tokens) or a "
                "personal access token (Data Center: profile → Personal Access Tokens)",
            )
            auth = httpx.BasicAuth(options.email, token) if options.email else None
            headers = {"Accept": "application/json", "User-Agent": "teambot"}
            if auth is None:
                headers["Authorization"] = f"Bearer {token}"
            self._http = httpx.AsyncClient(
                auth=auth,
                headers=headers,
                timeout=httpx.Timeout(self._source.timeout),
                limits=httpx.Limits(max_connections=self._source.concurrency),
            )
        return self._http

    async def documents(self) -> AsyncIterator[DocumentRef]:
        try:
            space = parse_location(self._source.location)
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
        url: str | None = (
            f"{self._base}/rest/api/content?spaceKey={space}&type=page&status=current"
            f"&limit={PAGE_SIZE}&start=0&expand={_EXPAND}"
        )
        pages: list[dict[str, Any]] = []
        while url:
            body = await self._listing(url)
            pages.extend(body.get("results", []))
            following = body.get("_links", {}).get("next")
            url = f"{self._base}{following}" if following else None
        if not pages:
            await self._space_exists(space)
        restricted = {page["id"]: _restrictions(page) for page in pages}
        for page in pages:
            audience = _audience(page, restricted)
            yield DocumentRef(
                uri=page["id"],
                title=page.get("title", ""),
                url=self._base + page.get("_links", {}).get("webui", f"/pages/{page['id']}"),
                version=str(page.get("version", {}).get("number", "")),
                modified_at=_when(page.get("version", {}).get("when")),
                audience=audience,
                meta={"type": "page"},
            )
            if self._options.attachments:
                async for ref in self._attachments(page, audience):
                    yield ref

    async def read(self, ref: DocumentRef) -> Document:
        if ref.meta.get("type") == "attachment":
            return await self._attachment(ref)
        url = f"{self._base}/rest/api/content/{ref.uri}?expand=body.storage,version"
        response = await self._get(url, LoadError)
        self._check(response, LoadError, f"page {ref.title!r}")
        page = response.json()
        storage = page.get("body", {}).get("storage", {}).get("value", "")
        text = storage_to_markdown(storage, page.get("title", ref.title))
        return await parse_bytes(
            text.encode(), "markdown", uri=ref.uri, name=ref.title, url=ref.url
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _attachments(
        self, page: dict[str, Any], audience: Audience | None
    ) -> AsyncIterator[DocumentRef]:
        url: str | None = (
            f"{self._base}/rest/api/content/{page['id']}/child/attachment"
            f"?limit={PAGE_SIZE}&start=0&expand=version"
        )
        while url:
            body = await self._listing(url)
            for item in body.get("results", []):
                name = item.get("title", "")
                if PurePosixPath(name).suffix.lower() not in KINDS:
                    continue
                links = item.get("_links", {})
                yield DocumentRef(
                    uri=f"{page['id']}/{item['id']}",
                    title=f"{page.get('title', '')} / {name}",
                    url=self._base + links.get("webui", links.get("download", "")),
                    version=str(item.get("version", {}).get("number", "")),
                    modified_at=_when(item.get("version", {}).get("when")),
                    audience=audience,
                    meta={
                        "type": "attachment",
                        "download": links.get("download", ""),
                        "name": name,
                    },
                )
            following = body.get("_links", {}).get("next")
            url = f"{self._base}{following}" if following else None

    async def _attachment(self, ref: DocumentRef) -> Document:
        response = await self._get(self._base + ref.meta["download"], LoadError)
        self._check(response, LoadError, f"attachment {ref.meta['name']!r}")
        suffix = PurePosixPath(ref.meta["name"]).suffix.lower()
        return await parse_bytes(
            response.content,
            KINDS[suffix],
            uri=ref.uri,
            name=ref.title,
            suffix=suffix,
            modified_at=ref.modified_at,
            url=ref.url,
        )

    async def _listing(self, url: str) -> dict[str, Any]:
        response = await self._get(url, SourceError)
        self._check(response, SourceError, f"space {self._source.location!r}")
        body: dict[str, Any] = response.json()
        return body

    async def _space_exists(self, space: str) -> None:
        response = await self._get(f"{self._base}/rest/api/space/{space}", SourceError)
        self._check(response, SourceError, f"space {space}")

    async def _get(self, url: str, error: type[Exception]) -> httpx.Response:
        try:
            return await send(self._client(), "GET", url)
        except httpx.HTTPError as exc:
            raise error(
                f"Confluence at {self._base} unreachable: {type(exc).__name__}: {exc} "
                "/ 无法连接 Confluence"
            ) from exc

    def _check(self, response: httpx.Response, error: type[Exception], what: str) -> None:
        status = response.status_code
        if status == 200:
            return
        account = self._options.email or f"the token in {self._options.token_env}"
        if status == 401:
            raise error(
                f"Confluence refused the credentials (HTTP 401): check email and the API token "
                f"in {self._options.token_env} (Cloud), or the personal access token (Data "
                "Center) / Confluence 拒绝了凭据，请检查邮箱与令牌"
            )
        if status == 403:
            raise error(
                f"{what}: {account} may not read it (HTTP 403): give that account View "
                "permission on the space (Space settings → Permissions) / 该账号无权查看"
            )
        if status == 404 and error is LoadError:
            raise error(
                f"{what} no longer exists at {self._base} (HTTP 404: deleted or moved since "
                "the listing); the next refresh removes it / 该页面已不存在"
            )
        if status == 404:
            raise error(
                f"{what} not found at {self._base} (HTTP 404): check the space key and "
                f"base_url, and that {account} can see it / 找不到该空间或页面"
            )
        if status == 429:
            raise error("Confluence kept answering 429 (rate limited): try again later")
        raise error(f"{what}: Confluence answered HTTP {status}")


def _restrictions(page: dict[str, Any]) -> frozenset[str] | None:
    """The principals a page's own read restrictions name; None when it has none."""
    read = page.get("restrictions", {}).get("read", {}).get("restrictions", {})
    users = read.get("user", {}).get("results", [])
    groups = read.get("group", {}).get("results", [])
    if not users and not groups:
        return None
    found = {
        f"confluence:user:{u.get('accountId') or u.get('userKey') or u.get('username')}"
        for u in users
    }
    found |= {f"confluence:group:{g.get('name') or g.get('id')}" for g in groups}
    return frozenset(found)


def _audience(
    page: dict[str, Any], restricted: dict[str, frozenset[str] | None]
) -> Audience | None:
    levels = [restricted.get(a.get("id", "")) for a in page.get("ancestors", [])]
    levels.append(restricted.get(page["id"]))
    named = [level for level in levels if level is not None]
    if not named:
        return None
    allowed = named[0]
    for level in named[1:]:
        allowed &= level
    return Audience(principals=allowed)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


def parse_location(location: str) -> str:
    """A space key, or a pasted link to the space or one of its pages -> the space key."""
    location = location.strip()
    if "://" not in location:
        return location
    path = unquote(urlsplit(location).path)
    found = re.search(r"/spaces/([^/]+)", path) or re.search(r"/display/([^/]+)", path)
    if found is None:
        query = re.search(r"[?&]spaceKey=([^&]+)", location)
        if query is None:
            raise ValueError(
                f"{location}: no space in this link; paste the space's address "
                "(…/wiki/spaces/KEY/…) or give its key / 链接中没有空间标识"
            )
        return query.group(1)
    key = found.group(1)
    if not _KEY.match(key):
        raise ValueError(f"{key!r} is not a Confluence space key")
    return key


def _build(source: SourceSettings, options: ConfluenceOptions) -> ConfluenceReader:
    return ConfluenceReader(source, options)


CONFLUENCE = SourceKind(
    name="confluence",
    label="Confluence 空间 / Confluence space",
    location_help="a space key (ENG) or a pasted space link, with --set base_url=https://"
    "acme.atlassian.net/wiki",
    build=_build,
    options=ConfluenceOptions,
    parse_location=parse_location,
)
