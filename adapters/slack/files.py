"""Slack files for the attachment port: each file's `url_private` downloaded with the bot token
(scope files:read; redirects followed by `adapters/download.py`, the token kept to Slack's own
host), and the files of an `app_mention` — whose event carries none — found by reading the
message itself (conversations.history, or conversations.replies inside a thread)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx
from slack_sdk.web.async_client import AsyncWebClient

from adapters.download import download
from adapters.slack.checks import reason
from adapters.slack.reply import SLACK_ERRORS
from engine.messages import Fetch

log = logging.getLogger(__name__)


class SlackFiles:
    def __init__(self, client: AsyncWebClient, token: str) -> None:
        self._client = client
        self._token = token
        self._http = httpx.AsyncClient(follow_redirects=False, trust_env=False)

    def fetch(self, file: Mapping[str, Any]) -> Fetch | None:
        """The download handle of one entry of `event.files`; None without a private URL."""
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not url or not self._token:
            return None
        headers = {"Authorization": f"Bearer {self._token}"}

        async def fetch(limit: int) -> bytes:
            return await download(self._http, url, limit, headers=headers)

        return fetch

    async def with_files(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """`event` with its message's `files`: an app_mention carries none, so the message is
        read back (one call per mention); other events come as they are."""
        if event.get("type") != "app_mention" or "files" in event:
            return event
        channel, ts = str(event.get("channel") or ""), str(event.get("ts") or "")
        thread_ts = str(event.get("thread_ts") or "")
        try:
            if thread_ts and thread_ts != ts:
                response = await self._client.conversations_replies(
                    channel=channel, ts=thread_ts, latest=ts, oldest=ts, inclusive=True, limit=2
                )
            else:
                response = await self._client.conversations_history(
                    channel=channel, latest=ts, oldest=ts, inclusive=True, limit=1
                )
        except SLACK_ERRORS as error:
            log.warning("slack: could not read the message for its files: %s", reason(error))
            return event
        for message in response.get("messages") or []:
            if str(message.get("ts")) == ts and message.get("files"):
                return {**event, "files": message["files"]}
        return event

    async def close(self) -> None:
        await self._http.aclose()
