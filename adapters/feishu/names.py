"""Feishu names for the console: the group's name (im/v1/chats/:chat_id, scope
im:chat:readonly) and the asker's name (contact/v3/users/:open_id, scope
contact:user.base:readonly)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from lark_oapi.core.enum import AccessTokenType, HttpMethod
from lark_oapi.core.model import BaseRequest

from adapters.feishu.client import FeishuApi
from adapters.names import NameCache
from engine.messages import ThreadKey


class FeishuDirectory:
    def __init__(self, api: FeishuApi) -> None:
        self._api = api
        self._cache = NameCache()

    async def chat_name(self, key: ThreadKey) -> str:
        async def lookup() -> str:
            body = await self._get("im/v1/chats", f"/open-apis/im/v1/chats/{quote(key.chat_id)}")
            return str((body.get("data") or {}).get("name") or "")

        return await self._cache.get(f"c:{key.tenant}:{key.chat_id}", lookup)

    async def user_name(self, key: ThreadKey, user_id: str) -> str:
        async def lookup() -> str:
            uri = f"/open-apis/contact/v3/users/{quote(user_id)}"
            body = await self._get("contact/v3/users", uri, [("user_id_type", "open_id")])
            return str(((body.get("data") or {}).get("user") or {}).get("name") or "")

        return await self._cache.get(f"u:{key.tenant}:{user_id}", lookup)

    async def _get(
        self, call: str, uri: str, query: list[tuple[str, str]] | None = None
    ) -> dict[str, Any]:
        await self._api.tenant_token()  # fetched on a thread when cold, as elsewhere
        request = (
            BaseRequest.builder()
            .http_method(HttpMethod.GET)
            .uri(uri)
            .queries(query or [])
            .token_types({AccessTokenType.TENANT})
            .build()
        )
        return await self._api._raw(call, request)
