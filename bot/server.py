"""The HTTP server: what `bot/runtime.py` built, mounted on one FastAPI app.

Health, readiness and metrics, the admin API, the adapters' webhooks, the web chat and the
agents' console all come from the `Runtime`'s parts; its start and stop are the lifespan.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.middleware import Middleware

from bot.console.knowledge import UploadLimit
from bot.console.routes import mount_console
from bot.outage import database_unavailable
from bot.runtime import Runtime
from bot.settings import Settings
from engine import clean
from engine.config import AttachmentSettings


def create_server(settings: Settings, runtime: Runtime | None = None) -> FastAPI:
    """A FastAPI app for `settings` (or for a `runtime` built from them): routes from the
    runtime's parts, its start and stop as the lifespan."""
    runtime = runtime or Runtime(settings)
    limit = Middleware(
        UploadLimit,
        max_bytes=settings.server.max_body_bytes,
        knowledge=settings.knowledge,
        chat_bytes=chat_upload_bytes(settings.attachments),
    )
    server = FastAPI(
        title="teambot",
        lifespan=runtime.lifespan,
        docs_url=None,
        redoc_url=None,
        middleware=[limit],
        exception_handlers={
            RequestValidationError: invalid_request,
            DBAPIError: database_unavailable,  # a restart: 503, not 500
        },
    )
    for router in runtime.routers():
        server.include_router(router)
    if runtime.console is not None:
        mount_console(server, runtime.console)
    return server


def chat_upload_bytes(attachments: AttachmentSettings) -> int:
    """A web chat message may carry files: room for [attachments] max_files of max_mb, plus a
    megabyte, so that a larger one is still taken and the answer can say why it was not read."""
    return int(attachments.max_files * attachments.max_mb * 1_048_576) + 1_048_576


async def invalid_request(_: Request, error: Exception) -> JSONResponse:
    """422 with where and why only: FastAPI's own handler echoes the input back and fails with
    a 500 on a body that is not UTF-8 (or holds a lone surrogate)."""
    errors = error.errors() if isinstance(error, RequestValidationError) else []
    detail = [
        {
            "loc": [clean.text(part, 100) for part in e.get("loc", ())],
            "msg": clean.text(e.get("msg", ""), 300),
            "type": clean.text(e.get("type", ""), 100),
        }
        for e in errors[:20]
    ]
    return JSONResponse({"detail": detail}, status_code=422)
