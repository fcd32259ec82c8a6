"""Auto mode's model decision: offer the model a `web_search` tool through OpenAI tool calling.

Only used when the server parses tool calls (SGLang started with `--tool-call-parser`, which
`/model_info` reports). R1 distills are not tool-trained, so any failure here falls back to the
rule in lookup.py rather than to "no search".
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import httpx

log = logging.getLogger(__name__)

# Fixed bytes, fixed order: the tool schema is part of the cached prefix on the server.
WEB_SEARCH_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "web_search",
        "description": (
            "Search the public web for current facts (releases, prices, outages, news) that the "
            "team's knowledge base cannot have. Do not call it for internal procedures."
        ),
        "parameters": {
            "type": "object",
            "properties": {"query": {"type": "string", "description": "a short web search query"}},
            "required": ["query"],
        },
    },
}

DECIDE = (
    "Decide whether answering the question below needs a web search. Call web_search with a "
    "short query only if it needs current or public facts that the team's knowledge base "
    "cannot hold; otherwise answer just NO."
)


class ToolError(Exception):
    """The decision could not be had (server error, timeout, unparsable tool call)."""


class ToolDecider:
    """Asks the model server whether to search; remembers whether the server parses tool calls."""

    _RECHECK = 300.0  # seconds before asking /model_info again after a negative or failed check

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str = "",
        timeout: float = 20.0,
        http: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._root = self.base_url.removesuffix("/v1")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._model = model
        self._own_http = http is None
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=2.0))
        self._supported: bool | None = None
        self._checked_at = 0.0

    async def close(self) -> None:
        if self._own_http:
            await self._http.aclose()

    async def supported(self) -> bool:
        """Whether the server reports a tool-call parser (cached; rechecked every few minutes)."""
        if self._supported is not None and (
            self._supported or time.monotonic() - self._checked_at < self._RECHECK
        ):
            return self._supported
        self._checked_at = time.monotonic()
        try:
            response = await self._http.get(f"{self._root}/model_info", headers=self._headers)
            info = response.json() if response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            info = {}
        self._supported = bool(isinstance(info, dict) and info.get("tool_call_parser"))
        return self._supported

    async def decide(self, question: str, *, grounded: bool) -> str | None:
        """The query the model wants searched, or None when it declines."""
        kb = "has" if grounded else "has no"
        body = {
            "model": await self._model_name(),
            "messages": [
                {
                    "role": "user",
                    "content": f"{DECIDE}\nThe knowledge base {kb} passages on it.\n\n"
                    f"Question: {question}",
                }
            ],
            "tools": [WEB_SEARCH_TOOL],
            "tool_choice": "auto",
            "temperature": 0.0,
            "max_tokens": 1024,
        }
        try:
            response = await self._http.post(
                f"{self.base_url}/chat/completions", json=body, headers=self._headers
            )
            response.raise_for_status()
            message = response.json()["choices"][0]["message"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
            raise ToolError(f"tool decision failed: {type(error).__name__}: {error}") from None
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            if function.get("name") != "web_search":
                continue
            try:
                arguments = json.loads(function.get("arguments") or "{}")
            except ValueError:
                raise ToolError("the model's web_search arguments are not JSON") from None
            query = str(arguments.get("query") or "").strip() if isinstance(arguments, dict) else ""
            return query or question
        return None

    async def _model_name(self) -> str:
        if not self._model:
            try:
                response = await self._http.get(f"{self.base_url}/models", headers=self._headers)
                self._model = response.json()["data"][0]["id"]
            except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as error:
                raise ToolError(f"cannot list models: {error!r}") from None
        return self._model
