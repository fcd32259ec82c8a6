"""Auto mode's model decision: offer the model a `web_search` tool through OpenAI tool calling.

Only used when the server parses tool calls (SGLang started with `--tool-call-parser`, which
`/model_info` reports). R1 distills are not tool-trained, so any failure here falls back to the
rule in lookup.py rather than to "no search". The calls go through the app's one LLMClient: the
circuit breaker and the concurrency bound count them like every other call to the model.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from engine.llm import LLMClient, LLMError

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
    """Asks the model whether to search; remembers whether its server parses tool calls."""

    _RECHECK = 300.0  # seconds before asking /model_info again after a negative or failed check

    def __init__(self, llm: LLMClient, *, seconds: float = 20.0) -> None:
        self._llm = llm
        self._seconds = seconds
        self._supported: bool | None = None
        self._checked_at = 0.0

    async def supported(self) -> bool:
        """Whether the server reports a tool-call parser (cached; rechecked every few minutes).
        False while the breaker is open, without asking: the model is down, the rule decides."""
        if self._llm.breaker_open:
            return False
        if self._supported is not None and (
            self._supported or time.monotonic() - self._checked_at < self._RECHECK
        ):
            return self._supported
        self._checked_at = time.monotonic()
        self._supported = bool(await self._llm.tool_parser())
        return self._supported

    async def decide(self, question: str, *, grounded: bool) -> str | None:
        """The query the model wants searched, or None when it declines."""
        kb = "has" if grounded else "has no"
        content = f"{DECIDE}\nThe knowledge base {kb} passages on it.\n\nQuestion: {question}"
        try:
            calls = await self._llm.tool_calls(
                [{"role": "user", "content": content}],
                [WEB_SEARCH_TOOL],
                max_tokens=1024,
                seconds=self._seconds,
            )
        except LLMError as error:
            raise ToolError(f"tool decision failed: {type(error).__name__}: {error}") from None
        for call in calls:
            if call.name != "web_search":
                continue
            try:
                arguments = json.loads(call.arguments or "{}")
            except ValueError:
                raise ToolError("the model's web_search arguments are not JSON") from None
            query = str(arguments.get("query") or "").strip() if isinstance(arguments, dict) else ""
            return query or question
        return None
