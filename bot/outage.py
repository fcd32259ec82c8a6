"""A request that meets an unreachable database (a restart, a failover) gets a 503 that says so
in both languages, with Retry-After, instead of a 500 with a stack trace in the log: the web
chat page shows the words and the asker tries again in a moment."""

from __future__ import annotations

import logging

from fastapi import Request
from fastapi.responses import JSONResponse

from engine.catalog import both

log = logging.getLogger(__name__)

UNAVAILABLE = both("database_unavailable")
RETRY_AFTER_SECONDS = 5


async def database_unavailable(request: Request, error: Exception) -> JSONResponse:
    """503 for `sqlalchemy.exc.DBAPIError` (refused, reset, "shutting down") on any route."""
    log.warning("%s %s: the database is unreachable (%s)", request.method, request.url.path,
                str(error).splitlines()[0][:200])  # fmt: skip
    headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse({"error": UNAVAILABLE}, status_code=503, headers=headers)
