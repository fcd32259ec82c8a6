"""The `dingtalk_wiki` kind: a DingTalk knowledge base (workspace → nodes → documents) on the
`[dingtalk]` app credentials, through DingTalk's documented REST API over httpx
(dingtalk-stream wraps none of these calls).

Reads run as one operator (the `operator` key: that user's unionId), who must be able to open
the knowledge base. Online documents (extension adoc) are read through the blocks API and kept
as Markdown (headings become sections). A node's version is its `modifiedTime` plus a
per-document check period (`recheck_days`): DingTalk has been seen to keep `modifiedTime` while
the content changed, so each document is re-read once a period and its content hash decides.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from aiolimiter import AsyncLimiter
from pydantic import BaseModel, Field
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from adapters.dingtalk.config import DingTalkSettings
from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.sources import DocumentRef, SourceKind, SourceReader
from knowledge.types import Document

__all__ = ["DingTalkWikiOptions", "blocks_markdown", "dingtalk_kinds", "parse_workspace"]

PREVIEW = "https://alidocs.dingtalk.com/i/nodes/{node}"
_DAY = 86_400


class DingTalkWikiOptions(BaseModel):
    model_config = {"extra": "forbid"}

    operator: str = Field(
        min_length=1,
        description="the unionId of a user who can open the knowledge base; reads run as them",
    )
    recheck_days: int = Field(
        default=7, ge=1, le=90, description="re-read each document once this often, edited or not"
    )


class _Throttled(Exception):
    pass


def parse_workspace(location: str) -> str:
    """An alidocs workspace link or a workspace id -> the workspace id."""
    text = location.strip()
    parts = [p for p in (urlsplit(text).path if "://" in text else text).split("/") if p]
    if "spaces" in parts and parts.index("spaces") + 1 < len(parts):
        return parts[parts.index("spaces") + 1]
    if len(parts) == 1:
        return parts[0]
    raise ValueError(
        f"dingtalk_wiki: {location!r} is not a knowledge base link or id; paste e.g. "
        "https://alidocs.dingtalk.com/i/spaces/r9xmyYP7YK1w1mEO/overview"
    )


class DingTalkWikiReader:
    """Every document of one knowledge base, folders walked, `nextToken` paging."""

    def __init__(
        self, settings: DingTalkSettings, source: SourceSettings, options: DingTalkWikiOptions
    ) -> None:
        self._settings = settings
        self._workspace = parse_workspace(source.location)
        self._options = options
        self._http = httpx.AsyncClient(
            base_url=settings.openapi_endpoint, timeout=source.timeout, trust_env=False
        )
        self._token = ""
        self._limit = AsyncLimiter(15, 1)  # DingTalk's default: 20 calls a second per app
        self.calls = 0

    async def documents(self) -> AsyncIterator[DocumentRef]:
        try:
            space = await self._get(f"/v2.0/wiki/workspaces/{self._workspace}", {})
            root = str((space.get("workspace") or {}).get("rootNodeId") or "")
            if not root:
                raise SourceError(f"knowledge base {self._workspace}: no root node in the answer")
            parents = [root]
            while parents:
                async for node in self._children(parents.pop(0)):
                    if node.get("type") == "FOLDER" or node.get("hasChildren"):
                        parents.append(str(node["nodeId"]))
                    if node.get("type") == "FILE":
                        yield self._ref(node)
        except LoadError as error:
            raise SourceError(f"knowledge base {self._workspace}: {error}") from error

    async def _children(self, parent: str) -> AsyncIterator[dict[str, Any]]:
        token = ""
        while True:
            query = {"parentNodeId": parent, "maxResults": "50"}
            if token:
                query["nextToken"] = token
            page = await self._get("/v2.0/wiki/nodes", query)
            for node in page.get("nodes") or ():
                yield node
            token = str(page.get("nextToken") or "")
            if not token:
                return

    def _ref(self, node: dict[str, Any]) -> DocumentRef:
        node_id = str(node["nodeId"])
        period = self._options.recheck_days * _DAY
        offset = int(hashlib.sha1(node_id.encode()).hexdigest()[:8], 16) % period
        bucket = int((time.time() + offset) // period)  # staggered: not all on one day
        modified = str(node.get("modifiedTime") or "")
        return DocumentRef(
            uri=node_id,
            title=str(node.get("name") or node_id),
            url=PREVIEW.format(node=node_id),
            version=f"{modified}|{bucket}" if modified else "",
            meta={"extension": str(node.get("extension") or "")},
        )

    async def read(self, ref: DocumentRef) -> Document:
        extension = ref.meta.get("extension", "")
        if extension != "adoc":
            raise LoadError(
                f"skipped: a .{extension or '?'} file in a DingTalk knowledge base is not read "
                "(only online documents are); keep it in a folder source instead"
            )
        blocks: list[dict[str, Any]] = []
        token = ""
        while True:
            query = {"nextToken": token} if token else {}
            page = await self._get(f"/v1.0/doc/suites/documents/{ref.uri}/blocks", query)
            result = page.get("result") or page
            blocks.extend(result.get("data") or ())
            token = str(result.get("nextToken") or "")
            if not token:
                break
        return Document(
            uri=ref.uri, title=ref.title, text=blocks_markdown(blocks), kind="markdown", url=ref.url
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _get(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(_Throttled),
            wait=wait_exponential(multiplier=0.5, max=30),
            stop=stop_after_attempt(6),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    return await self._once(path, query)
        except _Throttled as error:
            raise LoadError(f"{path}: DingTalk kept answering 429 (rate limited)") from error
        raise AssertionError("unreachable")

    async def _once(self, path: str, query: dict[str, str]) -> dict[str, Any]:
        headers = {"x-acs-dingtalk-access-token": await self._access_token()}
        async with self._limit:
            self.calls += 1
            try:
                response = await self._http.get(
                    path, params={**query, "operatorId": self._options.operator}, headers=headers
                )
            except httpx.HTTPError as error:
                raise LoadError(f"{path}: {type(error).__name__}: {error}") from error
        if response.status_code == 429:
            raise _Throttled(path)
        if response.status_code != 200:
            raise LoadError(_explain(path, response))
        body: dict[str, Any] = response.json()
        return body

    async def _access_token(self) -> str:
        if self._token:
            return self._token
        secret = self._settings.client_secret
        if not self._settings.client_id or secret is None:
            raise SourceError(
                "DingTalk knowledge bases need the app's credentials: set [dingtalk] client_id "
                "and TEAMBOT_DINGTALK__CLIENT_SECRET (the chat adapter itself may stay disabled)"
            )
        body = {"appKey": self._settings.client_id, "appSecret": secret.get_secret_value()}
        try:
            response = await self._http.post("/v1.0/oauth2/accessToken", json=body)
        except httpx.HTTPError as error:
            raise SourceError(f"DingTalk token: {type(error).__name__}: {error}") from error
        if response.status_code != 200:
            raise SourceError(
                f"DingTalk refused the app's credentials (HTTP {response.status_code}): check "
                "[dingtalk] client_id and TEAMBOT_DINGTALK__CLIENT_SECRET"
            )
        self._token = str(response.json()["accessToken"])
        return self._token


def _explain(path: str, response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = {}
    code, message = str(body.get("code") or ""), str(body.get("message") or response.text[:200])
    if response.status_code == 403 and "scope" in (code + message).lower():
        return (
            f"{path}: a permission is missing ({code}: {message}): grant the app "
            "Wiki.Workspace.Read, Wiki.Node.Read and Storage.File.Read in the DingTalk "
            "developer console"
        )
    if response.status_code == 403:
        return (
            f"{path}: the operator may not open it ({code}: {message}): make the operator "
            "(options.operator, a unionId) a member of the knowledge base"
        )
    if response.status_code == 404:
        return f"{path}: not found ({code}): it was deleted or moved; the next refresh removes it"
    return f"{path}: HTTP {response.status_code}: {code} {message}"


def _level(value: object) -> int:
    text = str(value or "1").rsplit("-", 1)[-1]
    return max(1, min(6, int(text))) if text.isdigit() else 1


def blocks_markdown(blocks: list[dict[str, Any]]) -> str:
    """DingTalk document blocks as Markdown (headings, paragraphs, lists, tables)."""
    lines: list[str] = []
    for block in blocks:
        kind = str(block.get("blockType") or "")
        inner = block.get(kind) or {}
        text = str(inner.get("text") or "").strip()
        if kind == "heading":
            lines += ["", "#" * _level(inner.get("level")) + " " + text, ""]
        elif kind in ("unorderedList", "orderedList"):
            lines.append(("- " if kind == "unorderedList" else "1. ") + text)
        elif kind == "table":
            cells: list[list[str]] = inner.get("data") or []
            if cells:
                lines += ["", "| " + " | ".join(cells[0]) + " |", "|" + " --- |" * len(cells[0])]
                lines += ["| " + " | ".join(row) + " |" for row in cells[1:]] + [""]
        elif text:
            lines += [text, ""]
    return "\n".join(lines).strip() + "\n"


def dingtalk_kinds(settings: DingTalkSettings) -> list[SourceKind]:
    """The DingTalk document kinds, reading with the `[dingtalk]` app's credentials."""

    def make(source: SourceSettings, options: BaseModel) -> SourceReader:
        assert isinstance(options, DingTalkWikiOptions)
        return DingTalkWikiReader(settings, source, options)

    return [
        SourceKind(
            name="dingtalk_wiki",
            label="钉钉知识库 / DingTalk knowledge base",
            location_help="a knowledge base link or id, e.g. "
            "https://alidocs.dingtalk.com/i/spaces/r9xmyYP7YK1w1mEO/overview; "
            "set operator = the unionId of a member",
            build=make,
            options=DingTalkWikiOptions,
            parse_location=parse_workspace,
        )
    ]
