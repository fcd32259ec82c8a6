"""The `notion` kind: a Notion database's pages, or a page and the pages under it, through the
official API (`notion-client`, API version 2025-09-03: a database holds data sources).

The listing names every page with its `last_edited_time` (the version the ingestor compares):
a database's rows come from querying its data sources, a page tree from walking each page's
blocks for sub-pages and child databases. Only changed pages are read: their blocks, fetched
recursively, become Markdown with headings (`notion_blocks`). Rate limits (429) are retried by
the client, honouring Retry-After. The integration sees only what was shared with it: a page
it cannot see is explained in words ("share the page with the integration …").
"""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import Field

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.parsing import parse_bytes
from knowledge.sources.base import DocumentRef, SourceKind
from knowledge.sources.notion_blocks import (
    Block,
    blocks_markdown,
    page_title,
    properties_markdown,
)
from knowledge.sources.secrets import ENV_NAME, SecretOptions, required
from knowledge.types import Document

__all__ = ["NOTION", "NotionOptions", "NotionReader"]

PAGE_SIZE = 100
RETRIES = 5
# Blocks that may hold sub-pages or child databases inside them (walked while listing).
_CONTAINERS = {"column_list", "column", "toggle", "synced_block", "callout", "quote"}
_ID = re.compile(r"([0-9a-f]{32})|([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")


class NotionOptions(SecretOptions):
    """`[[knowledge.sources]]` keys of kind notion."""

    token_env: str = Field(
        default="NOTION_TOKEN", pattern=ENV_NAME, description="secret holding the integration token"
    )
    api_url: str = Field(default="https://api.notion.com", description="the API's address")
    subpages: bool = Field(default=True, description="a page: also the pages under it")


class NotionReader:
    """One database or one page tree."""

    def __init__(self, source: SourceSettings, options: NotionOptions) -> None:
        self._source = source
        self._options = options
        self._client: Any = None

    def _api(self) -> Any:
        if self._client is None:
            from notion_client import AsyncClient
            from notion_client.client import ClientOptions, RetryOptions

            token = required(
                self._options.token_env,
                "token_env",
                "the integration's Internal Integration Secret (notion.so/my-integrations)",
            )
            self._client = AsyncClient(
                options=ClientOptions(
                    auth=token,
                    base_url=self._options.api_url.rstrip("/"),
                    timeout_ms=int(self._source.timeout * 1000),
                    logger=logging.getLogger(f"{__name__}.api"),
                    log_level=logging.ERROR,  # its failures reach the operator as ours, in words
                    retry=RetryOptions(max_retries=RETRIES, initial_retry_delay_ms=500),
                )
            )
        return self._client

    async def documents(self) -> AsyncIterator[DocumentRef]:
        try:
            root = parse_location(self._source.location)
        except ValueError as exc:
            raise SourceError(str(exc)) from exc
        database = await self._call(self._api().databases.retrieve, root, SourceError, missing=True)
        if database is not None:
            async for ref in self._database(database, SourceError):
                yield ref
            return
        seen: set[str] = set()
        page = await self._call(self._api().pages.retrieve, root, SourceError)
        async for ref in self._tree(page, seen):
            yield ref

    async def read(self, ref: DocumentRef) -> Document:
        blocks = await self._children(ref.uri, LoadError, deep=True)
        lines = [f"# {ref.title or 'Untitled'}", ""]
        if ref.meta.get("properties"):
            lines += [ref.meta["properties"], ""]
        lines += blocks_markdown(blocks)
        text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"
        return await parse_bytes(
            text.encode(), "markdown", uri=ref.uri, name=ref.title, url=ref.url
        )

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

    def _ref(self, page: dict[str, Any]) -> DocumentRef:
        properties = ""
        if page.get("parent", {}).get("type") in ("database_id", "data_source_id"):
            properties = properties_markdown(page)
        edited = page.get("last_edited_time", "")
        return DocumentRef(
            uri=page["id"],
            title=page_title(page) or "Untitled",
            url=page.get("url", ""),
            version=edited,
            modified_at=_when(edited),
            meta={"properties": properties} if properties else {},
        )

    async def _database(
        self, database: dict[str, Any], error: type[Exception]
    ) -> AsyncIterator[DocumentRef]:
        api = self._api()
        for source in database.get("data_sources", []):
            cursor: str | None = None
            while True:
                kwargs: dict[str, Any] = {"page_size": PAGE_SIZE}
                if cursor:
                    kwargs["start_cursor"] = cursor
                body = await self._call(api.data_sources.query, source["id"], error, **kwargs)
                for page in body.get("results", []):
                    if page.get("object") == "page" and not page.get("in_trash"):
                        yield self._ref(page)
                if not body.get("has_more"):
                    break
                cursor = body.get("next_cursor")

    async def _tree(self, page: dict[str, Any], seen: set[str]) -> AsyncIterator[DocumentRef]:
        if page["id"] in seen or page.get("in_trash") or page.get("archived"):
            return
        seen.add(page["id"])
        yield self._ref(page)
        if not self._options.subpages:
            return
        for block in await self._children(page["id"], SourceError, deep=False):
            kind = block.get("type")
            if kind == "child_page":
                child = await self._call(self._api().pages.retrieve, block["id"], SourceError)
                async for ref in self._tree(child, seen):
                    yield ref
            elif kind == "child_database":
                database = await self._call(
                    self._api().databases.retrieve, block["id"], SourceError
                )
                async for ref in self._database(database, SourceError):
                    yield ref

    async def _children(self, block_id: str, error: type[Exception], *, deep: bool) -> list[Block]:
        """A block's children (all pages of them); `deep`: their content, recursively (a
        page's text); else only what may hold sub-pages (a listing)."""
        api, found, cursor = self._api(), [], None
        while True:
            kwargs: dict[str, Any] = {"page_size": PAGE_SIZE}
            if cursor:
                kwargs["start_cursor"] = cursor
            body = await self._call(api.blocks.children.list, block_id, error, **kwargs)
            found.extend(body.get("results", []))
            if not body.get("has_more"):
                break
            cursor = body.get("next_cursor")
        for block in list(found):
            kind = block.get("type", "")
            nested = kind not in ("child_page", "child_database") and (deep or kind in _CONTAINERS)
            if block.get("has_children") and nested:
                block["children"] = await self._children(block["id"], error, deep=deep)
                if not deep:  # a listing: what the containers hold, flattened
                    found.extend(block["children"])
        return found

    async def _call(
        self,
        method: Callable[..., Awaitable[Any]],
        object_id: str,
        error: type[Exception],
        missing: bool = False,
        **kwargs: Any,
    ) -> Any:
        """One API call; its failure as `error` with the fix in words (with `missing`, a
        page id given to the database endpoint answers None)."""
        from notion_client import APIResponseError
        from notion_client.errors import RequestTimeoutError

        try:
            return await method(object_id, **kwargs)
        except APIResponseError as exc:
            if missing and exc.code in ("object_not_found", "validation_error"):
                return None
            raise error(self._explain(exc, object_id)) from exc
        except (RequestTimeoutError, httpx.HTTPError, OSError) as exc:
            raise error(
                f"Notion at {self._options.api_url} unreachable: {type(exc).__name__}: {exc} "
                "/ 无法连接 Notion"
            ) from exc

    def _explain(self, exc: Any, object_id: str) -> str:
        code, env = str(getattr(exc.code, "value", exc.code)), self._options.token_env
        if code == "unauthorized":
            return (
                f"Notion refused the token in {env} (401): copy the integration's Internal "
                "Integration Secret from notion.so/my-integrations / Notion 拒绝了令牌"
            )
        if code == "object_not_found":
            return (
                f"Notion cannot find {object_id} for this integration: share the page or "
                "database with the integration (open it in Notion → ••• → Connections → "
                "Connect to → your integration; pages under it are shared with it) "
                "/ 请在 Notion 中把该页面共享给集成（••• → 连接）"
            )
        if code == "restricted_resource":
            return (
                f"the integration may not read {object_id} (403): turn on its Read content "
                "capability at notion.so/my-integrations → Capabilities / 集成缺少读取内容权限"
            )
        if code == "rate_limited":
            return f"Notion kept answering 429 (rate limited) after {RETRIES} retries"
        return f"Notion answered HTTP {exc.status} ({code}) for {object_id}: {exc}"


def _when(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


def parse_location(location: str) -> str:
    """A page or database id, or a pasted Notion link -> the id, dashed."""
    raw = location.strip()
    where = unquote_path(raw) if "://" in raw else raw
    found = _ID.findall(where.lower())
    if not found:
        raise ValueError(
            f"{raw}: no Notion page or database id in it; paste the page's link (Share → "
            "Copy link) / 链接中没有 Notion 页面 ID"
        )
    plain, dashed = found[-1]
    hexed = (plain or dashed).replace("-", "")
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def unquote_path(url: str) -> str:
    return urlsplit(url).path


def _build(source: SourceSettings, options: NotionOptions) -> NotionReader:
    return NotionReader(source, options)


NOTION = SourceKind(
    name="notion",
    label="Notion 页面或数据库 / Notion page or database",
    location_help="a page or database link (Share → Copy link) or its id; the integration "
    "named by token_env must be connected to it",
    build=_build,
    options=NotionOptions,
    parse_location=parse_location,
)
