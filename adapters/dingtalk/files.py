"""DingTalk pictures and files for the attachment port: a message's `downloadCode` is exchanged
for a temporary URL (POST /v1.0/robot/messageFiles/download {downloadCode, robotCode}), whose
host is checked before anything is fetched from it (DingTalk's or its object storage's, or the
OpenAPI endpoint's own), then the bytes are streamed up to the core's limit."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from adapters.dingtalk.client import DingTalkApiError, OpenApi
from adapters.download import download
from engine.messages import DownloadError, Fetch

# Where DingTalk's temporary download URLs point (suffixes); the OpenAPI endpoint's host too.
DOWNLOAD_HOSTS = ("dingtalk.com", "aliyuncs.com", "dingtalkapps.com")


def _refusal(error: DingTalkApiError) -> str:
    if error.status == 403:
        return (
            "DingTalk refused (HTTP 403): the app needs permission to read robot message files, "
            "and files need an enterprise-certified organisation"
        )
    if error.status in (400, 404):
        return "the download code is invalid or expired: send the file again"
    if error.status == 429:
        return "DingTalk is rate limiting downloads: try again in a moment"
    return f"DingTalk refused: HTTP {error.status}"


def download_codes(api: OpenApi, endpoint: str) -> Callable[[str], Fetch]:
    """Makes the download handle of one `downloadCode`."""
    hosts = (*DOWNLOAD_HOSTS, urlsplit(endpoint).hostname or "")

    def handle(code: str) -> Fetch:
        async def fetch(limit: int) -> bytes:
            try:
                url = await api.file_url(code)
            except DingTalkApiError as error:
                raise DownloadError(_refusal(error)) from error
            return await download(api.http, url, limit, allowed_hosts=hosts)

        return fetch

    return handle
