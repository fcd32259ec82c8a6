"""Slack names for the console: `conversations.info` for a channel's name, `users.info` for a
person's display name (scopes channels:read, groups:read, im:read, mpim:read, users:read)."""

from __future__ import annotations

from slack_sdk.web.async_client import AsyncWebClient

from adapters.names import NameCache
from engine.messages import ThreadKey


class SlackDirectory:
    def __init__(self, client: AsyncWebClient) -> None:
        self._client = client
        self._cache = NameCache()

    async def chat_name(self, key: ThreadKey) -> str:
        async def lookup() -> str:
            channel = (await self._client.conversations_info(channel=key.chat_id))["channel"]
            if channel.get("is_im"):
                return "私信 / direct message"
            name = channel.get("name") or ""
            return f"#{name}" if name else ""

        return await self._cache.get(f"c:{key.tenant}:{key.chat_id}", lookup)

    async def user_name(self, key: ThreadKey, user_id: str) -> str:
        async def lookup() -> str:
            user = (await self._client.users_info(user=user_id))["user"]
            profile = user.get("profile") or {}
            return str(
                profile.get("display_name") or profile.get("real_name") or user.get("name") or ""
            )

        return await self._cache.get(f"u:{key.tenant}:{user_id}", lookup)
