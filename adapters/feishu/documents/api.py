"""The Open API calls the Feishu document kinds make: wiki nodes, docx blocks, drive files,
permissions, subscriptions — lark-oapi's request builders, sent with `lark.Client.arequest`
(which keeps the raw answer even when it is not JSON), the tenant token warmed in a thread.

Every call is counted (`calls`, for the benchmark), rate-limited per API family (wiki node
listing: 100 calls a minute) and retried with backoff on HTTP 429 and code 99991400. A failure
becomes `DocsError` whose message carries the fix in words.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

from aiolimiter import AsyncLimiter
from lark_oapi.api.docx.v1 import GetDocumentRequest, ListDocumentBlockRequest
from lark_oapi.api.drive.v1 import (
    DownloadFileRequest,
    GetPermissionPublicRequest,
    ListFileRequest,
    ListPermissionMemberRequest,
    SubscribeFileRequest,
)
from lark_oapi.api.tenant.v2 import QueryTenantRequest
from lark_oapi.api.wiki.v2 import GetNodeSpaceRequest, ListSpaceNodeRequest
from lark_oapi.core.model import BaseRequest
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from adapters.feishu.client import FeishuApi, FeishuApiError
from adapters.feishu.documents.errors import RATE_LIMITED, DocsError, RateLimitedError, explain

__all__ = ["DocsApi", "DocsError", "RateLimitedError", "explain"]

_LIMITS = {  # calls a minute, per the Open API's published limits (with a little headroom)
    "wiki": 95,
    "docx": 280,
    "drive": 900,
    "perm": 900,
    "tenant": 60,
}


class DocsApi:
    """One app's document calls, counted and rate-limited."""

    def __init__(self, api: FeishuApi, *, backoff: float = 1.0, attempts: int = 6) -> None:
        self._api = api
        self._backoff = backoff
        self._attempts = attempts
        self._limits = {family: AsyncLimiter(rate, 60) for family, rate in _LIMITS.items()}
        self.calls: Counter[str] = Counter()
        self._tenant: dict[str, Any] | None = None

    async def nodes(self, space_id: str, parent: str = "") -> AsyncIterator[dict[str, Any]]:
        """The child nodes of `parent` (the space's top level when ""), every page."""
        token = ""
        while True:
            builder = ListSpaceNodeRequest.builder().space_id(space_id).page_size(50)
            if parent:
                builder = builder.parent_node_token(parent)
            if token:
                builder = builder.page_token(token)
            data = await self._json("wiki", "wiki/v2 nodes list", builder.build())
            for item in data.get("items") or ():
                yield item
            token = str(data.get("page_token") or "")
            if not data.get("has_more") or not token:
                return

    async def node(self, token: str, obj_type: str = "") -> dict[str, Any]:
        """A wiki node by node token (or by document token with `obj_type`)."""
        builder = GetNodeSpaceRequest.builder().token(token)
        if obj_type:
            builder = builder.obj_type(obj_type)
        data = await self._json("wiki", "wiki/v2 get_node", builder.build())
        return dict(data.get("node") or {})

    async def document(self, document_id: str) -> dict[str, Any]:
        """A docx document's metadata (title, revision_id)."""
        request = GetDocumentRequest.builder().document_id(document_id).build()
        data = await self._json("docx", "docx/v1 document get", request)
        return dict(data.get("document") or {})

    async def blocks(self, document_id: str) -> list[dict[str, Any]]:
        """Every block of a docx document, in document order."""
        found: list[dict[str, Any]] = []
        token = ""
        while True:
            builder = ListDocumentBlockRequest.builder().document_id(document_id).page_size(500)
            if token:
                builder = builder.page_token(token)
            data = await self._json("docx", "docx/v1 blocks list", builder.build())
            found.extend(data.get("items") or ())
            token = str(data.get("page_token") or "")
            if not data.get("has_more") or not token:
                return found

    async def files(self, folder: str) -> AsyncIterator[dict[str, Any]]:
        """One drive folder's entries (one level), every page."""
        token = ""
        while True:
            builder = ListFileRequest.builder().folder_token(folder).page_size(200)
            if token:
                builder = builder.page_token(token)
            data = await self._json("drive", "drive/v1 files list", builder.build())
            for item in data.get("files") or ():
                yield item
            token = str(data.get("next_page_token") or "")
            if not data.get("has_more") or not token:
                return

    async def download(self, file_token: str) -> bytes:
        """An uploaded drive file's bytes."""
        request = DownloadFileRequest.builder().file_token(file_token).build()
        raw = await self._send("drive", "drive/v1 file download", request)
        if 200 <= raw.status_code < 300 and not _is_json(raw.headers):
            return bytes(raw.content or b"")
        self._fail("drive", "drive/v1 file download", raw)
        raise AssertionError("unreachable")

    async def members(self, token: str, doc_type: str) -> list[dict[str, Any]]:
        """A document's collaborators (users, chats, departments)."""
        request = ListPermissionMemberRequest.builder().token(token).type(doc_type).build()
        data = await self._json("perm", "drive/v1 permission members", request)
        return list(data.get("items") or ())

    async def public(self, token: str, doc_type: str) -> dict[str, Any]:
        """A document's link-sharing settings."""
        request = GetPermissionPublicRequest.builder().token(token).type(doc_type).build()
        data = await self._json("perm", "drive/v1 permission public", request)
        return dict(data.get("permission_public") or {})

    async def subscribe(self, file_token: str, file_type: str) -> None:
        """Ask for change events (drive.file.edit_v1, …) of one document."""
        request = SubscribeFileRequest.builder().file_token(file_token).file_type(file_type)
        await self._json("drive", "drive/v1 file subscribe", request.build())

    async def tenant(self) -> dict[str, Any]:
        """The tenant (domain for links, tenant_key for audiences); {} when the app may not
        read it (scope tenant:tenant:readonly)."""
        if self._tenant is None:
            try:
                request = QueryTenantRequest.builder().build()
                data = await self._json("tenant", "tenant/v2 query", request)
            except DocsError:
                data = {}
            self._tenant = dict(data.get("tenant") or {})
        return self._tenant

    async def tenant_domain(self) -> str:
        return str((await self.tenant()).get("domain") or "")

    async def tenant_key(self) -> str:
        return str((await self.tenant()).get("tenant_key") or "")

    async def _json(self, family: str, call: str, request: BaseRequest) -> dict[str, Any]:
        raw = await self._send(family, call, request)
        body = _body(raw)
        if raw.status_code >= 400 or body.get("code", 0) != 0:
            self._fail(family, call, raw)
        return dict(body.get("data") or {})

    async def _send(self, family: str, call: str, request: BaseRequest) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type(RateLimitedError),
            wait=wait_exponential(multiplier=self._backoff, max=60 * self._backoff),
            stop=stop_after_attempt(self._attempts),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._token(call)
                async with self._limits[family]:
                    self.calls[family] += 1
                    try:
                        response = await self._api.client.arequest(request)
                    except Exception as error:  # transport: the SDK wraps nothing
                        raise DocsError(
                            call, None, f"{call}: {type(error).__name__}: {error}"
                        ) from error
                raw = response.raw
                if raw.status_code == 429 or _body(raw).get("code") == RATE_LIMITED:
                    raise RateLimitedError(call, RATE_LIMITED, f"{call}: rate limited by Feishu")
                return raw
        raise AssertionError("unreachable")

    async def _token(self, call: str) -> None:
        """The tenant token, warmed in a thread (the SDK's own fetch blocks)."""
        try:
            await self._api.tenant_token()
        except FeishuApiError as error:
            raise DocsError(
                call,
                error.code,
                f"Feishu refused the app's credentials ({error}): check [feishu] app_id, "
                "TEAMBOT_FEISHU__APP_SECRET and [feishu] domain",
            ) from error

    def _fail(self, family: str, call: str, raw: Any) -> None:
        body = _body(raw)
        code = body.get("code")
        if code in (None, 0):
            code = raw.status_code
        raise DocsError(call, code, explain(family, call, code, str(body.get("msg") or "")))

    async def aclose(self) -> None:
        return None


def _is_json(headers: dict[str, str]) -> bool:
    kind = {k.lower(): v for k, v in (headers or {}).items()}.get("content-type", "")
    return kind.startswith("application/json")


def _body(raw: Any) -> dict[str, Any]:
    if not raw.content or not _is_json(raw.headers):
        return {}
    try:
        body = json.loads(raw.content)
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
