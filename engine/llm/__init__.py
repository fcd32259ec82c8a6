"""The model server: one client (`client.py`: streaming, one-shot and tool-calling chat behind
the concurrency bound and the circuit breaker), its errors (`errors.py`), reading a streamed
answer off the wire as Deltas (`sse.py`), and what the server says about itself (`probe.py`)."""

from __future__ import annotations

from engine.config import LLMSettings
from engine.llm.client import DEFAULT_CONCURRENCY, DEFAULT_CONTEXT, LLMClient, ToolCall
from engine.llm.errors import (
    LLMContextExceeded,
    LLMEmptyAnswer,
    LLMError,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
)
from engine.llm.probe import ServerInfo, ServerReport
from engine.llm.sse import Delta
from engine.llm.think import ThinkSplitter

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONTEXT",
    "Delta",
    "LLMClient",
    "LLMContextExceeded",
    "LLMEmptyAnswer",
    "LLMError",
    "LLMServerError",
    "LLMSettings",
    "LLMStreamBroken",
    "LLMTimeout",
    "LLMUnavailable",
    "ServerInfo",
    "ServerReport",
    "ThinkSplitter",
    "ToolCall",
]
