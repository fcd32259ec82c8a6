"""The request id that ties together every log line about one message."""

from __future__ import annotations

import uuid
from contextvars import ContextVar

request_id: ContextVar[str] = ContextVar("request_id", default="-")


def new_request_id(platform: str, message_id: str) -> str:
    """Set and return a fresh request id for the message being handled in this task."""
    rid = f"{platform}-{uuid.uuid4().hex[:12]}"
    request_id.set(rid)
    return rid
