"""Search providers behind one interface: SearXNG (self-hosted JSON API), ddgs (no key), Tavily.

Provider endpoints are the operator's choice and are not put through the guard; the URLs they
return are, before anything is fetched.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol

import httpx

from engine.weblookup.config import WebSettings
from engine.weblookup.types import SearchHit


class ProviderError(Exception):
    """The provider could not answer (down, timed out, refused, misconfigured)."""


class Provider(Protocol):
    name: str

    async def search(self, query: str, max_results: int, language: str) -> list[SearchHit]:
        """The provider's results, best first; ProviderError when it cannot answer."""
        ...

    async def close(self) -> None: ...


def _hits(rows: Any, url_key: str, snippet_key: str, limit: int) -> list[SearchHit]:
    hits: list[SearchHit] = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict):
            continue
        url = str(row.get(url_key) or "")
        if url.startswith(("http://", "https://")):
            hits.append(
                SearchHit(str(row.get("title") or url), url, str(row.get(snippet_key) or ""))
            )
        if len(hits) >= limit:
            break
    return hits


class _HTTPProvider:
    name = "http"

    def __init__(self, timeout: float, http: httpx.AsyncClient | None) -> None:
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 3.0))
        )

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def _call(self, method: str, url: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, url, **kwargs)
        except httpx.HTTPError as error:
            raise ProviderError(
                f"{self.name} at {url} is unreachable ({type(error).__name__})"
            ) from None
        if response.status_code != 200:
            raise ProviderError(f"{self.name} at {url} answered HTTP {response.status_code}")
        try:
            return response.json()
        except ValueError:
            raise ProviderError(f"{self.name} at {url} did not answer JSON") from None


class SearxngProvider(_HTTPProvider):
    """A self-hosted SearXNG: GET /search?format=json (enable `json` under `search: formats`)."""

    name = "searxng"

    def __init__(self, base_url: str, timeout: float, http: httpx.AsyncClient | None = None):
        super().__init__(timeout, http)
        self._url = base_url.rstrip("/") + "/search"

    async def search(self, query: str, max_results: int, language: str) -> list[SearchHit]:
        params = {"q": query, "format": "json", "safesearch": "1"}
        params["language"] = "zh-CN" if language == "zh" else "all"
        try:
            data = await self._call("GET", self._url, params=params)
        except ProviderError as error:
            if "HTTP 403" in str(error):
                raise ProviderError(
                    f"{error}: enable the JSON API in SearXNG's settings.yml "
                    "(search: formats: [html, json])"
                ) from None
            raise
        return _hits(
            data.get("results") if isinstance(data, dict) else None, "url", "content", max_results
        )


class TavilyProvider(_HTTPProvider):
    """Tavily's search API (a key in TEAMBOT_WEB__API_KEY)."""

    name = "tavily"

    def __init__(
        self, base_url: str, api_key: str, timeout: float, http: httpx.AsyncClient | None = None
    ):
        super().__init__(timeout, http)
        self._url = base_url.rstrip("/") + "/search"
        self._key = api_key

    async def search(self, query: str, max_results: int, language: str) -> list[SearchHit]:
        body = {"query": query, "max_results": max_results, "search_depth": "basic"}
        headers = {"Authorization": f"Bearer {self._key}"}
        data = await self._call("POST", self._url, json=body, headers=headers)
        return _hits(
            data.get("results") if isinstance(data, dict) else None, "url", "content", max_results
        )


class DdgsProvider:
    """The `ddgs` metasearch library: no key, no server; its own HTTP client, run in a thread."""

    name = "ddgs"

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout

    async def close(self) -> None:
        return None

    async def search(self, query: str, max_results: int, language: str) -> list[SearchHit]:
        try:
            from ddgs import DDGS
        except ImportError:
            raise ProviderError(
                "the ddgs provider needs the ddgs package: pip install ddgs"
            ) from None
        region = "cn-zh" if language == "zh" else "us-en"

        def run() -> Any:
            return DDGS(timeout=max(1, int(self._timeout))).text(
                query, region=region, max_results=max_results
            )

        try:
            rows = await asyncio.to_thread(run)
        except Exception as error:  # ddgs raises its own and its HTTP client's errors
            raise ProviderError(f"ddgs search failed ({type(error).__name__}: {error})") from None
        return _hits(rows, "href", "body", max_results)


def build_provider(settings: WebSettings, http: httpx.AsyncClient | None = None) -> Provider:
    """The configured provider; ValueError with the fix when it cannot work as configured."""
    if settings.provider == "searxng":
        return SearxngProvider(settings.searxng_url, settings.timeout, http)
    if settings.provider == "tavily":
        if settings.api_key is None:
            raise ValueError(
                "[web] provider = 'tavily' needs an API key: set TEAMBOT_WEB__API_KEY, or use "
                "provider = 'searxng' (self-hosted) or 'ddgs' (no key)"
            )
        key = settings.api_key.get_secret_value()
        return TavilyProvider(settings.tavily_url, key, settings.timeout, http)
    return DdgsProvider(settings.timeout)
