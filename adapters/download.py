"""Downloading an attachment's bytes over HTTP for the attachment port (`engine.messages.Fetch`):
streamed and cut off past the core's limit, redirects followed here (at most a few) so that
credentials go only to the host they were meant for, and the platform's refusals said in words.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import httpx

from engine.messages import DownloadError

MAX_REDIRECTS = 5
TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def too_large(limit: int) -> DownloadError:
    return DownloadError(f"larger than {limit} bytes")


async def download(
    client: httpx.AsyncClient,
    url: str,
    limit: int,
    *,
    headers: Mapping[str, str] | None = None,
    allowed_hosts: tuple[str, ...] = (),
) -> bytes:
    """The body at `url`, at most `limit` bytes. `headers` (a bearer token) are sent only to
    the first URL's host; `allowed_hosts` (suffixes), when given, bounds where the download may
    go at all. Raises `DownloadError`."""
    first_host = urlsplit(url).hostname or ""
    for _ in range(MAX_REDIRECTS + 1):
        host = urlsplit(url).hostname or ""
        if urlsplit(url).scheme not in ("http", "https") or not host:
            raise DownloadError(f"not a web address: {url[:80]!r}")
        if allowed_hosts and not any(host == h or host.endswith("." + h) for h in allowed_hosts):
            raise DownloadError(f"the download address is on an unexpected host ({host})")
        sent = dict(headers or {}) if host == first_host else {}
        try:
            async with client.stream("GET", url, headers=sent, timeout=TIMEOUT) as response:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise DownloadError(_refusal(response.status_code))
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > limit:
                    raise too_large(limit)
                chunks: list[bytes] = []
                seen = 0
                async for chunk in response.aiter_bytes():
                    seen += len(chunk)
                    if seen > limit:
                        raise too_large(limit)
                    chunks.append(chunk)
                return b"".join(chunks)
        except httpx.HTTPError as error:
            raise DownloadError(
                f"the platform could not be reached ({type(error).__name__})"
            ) from error
    raise DownloadError(f"more than {MAX_REDIRECTS} redirects")


def _refusal(status: int) -> str:
    if status in (401, 403):
        return f"the platform refused the download (HTTP {status}): check the app's file scope"
    if status == 404:
        return "the file is gone from the platform (HTTP 404)"
    if status == 429:
        return "the platform is rate limiting downloads (HTTP 429): try again in a moment"
    return f"the platform answered HTTP {status}"
