"""The HTTP server: health, readiness, metrics, webhooks, the web chat and the agents' console."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from importlib.resources import files
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from adapters.base import Adapter
from bot.adapters import build_adapters
from bot.admin import Holder, admin_router
from bot.app import FEISHU_WATCH, Application
from bot.console.deps import Console
from bot.console.knowledge import UploadLimit
from bot.console.routes import mount_console
from bot.document_events import DocumentEvents
from bot.outage import database_unavailable
from bot.recovery import handover, schedule_recovery
from bot.settings import Settings
from engine import clean
from jobs.faq import ManagedFaq
from jobs.handoff import HandoffJobs
from jobs.retention import schedule_retention
from jobs.scheduler import start_scheduler

log = logging.getLogger(__name__)


def create_server(settings: Settings) -> FastAPI:
    """A FastAPI app for `settings`: the application (the adapters' Core) is built first and
    opened in the lifespan, closed at shutdown. On the embedded default the server also holds
    the data folder, so the CLI's knowledge commands come to it (bot/admin.py)."""
    application = Application(settings)
    adapters: list[Adapter] = build_adapters(settings, application, engine=application.engine)
    held: dict[str, Holder] = {}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if not settings.knowledge.chroma_url:  # embedded: this server is the index's one writer
            folder = settings.knowledge.persist_dir
            held["holder"] = await asyncio.to_thread(Holder.take, folder, settings.server.port)
        try:
            app = await application.open()
        except BaseException:
            if "holder" in held:
                held.pop("holder").release()
            raise
        app.knowledge.start_reembed()  # after a model change; the old index serves meanwhile
        started: list[Adapter] = []
        events: DocumentEvents | None = None
        scheduler = await start_scheduler(app.knowledge)  # knowledge refresh on each source's cron
        HandoffJobs(
            app.store,
            app.conversation,
            settings.escalation,
            adapters,
            app.knowledge,
            ManagedFaq(settings.console.faq_dir, settings.console.faq_collection),
        ).schedule(scheduler)  # SLA reminders, idle close, figures, the managed FAQ
        schedule_retention(scheduler, app.store, settings.storage.retention_days)
        # heartbeat first: every message the adapters take then names this replica
        heartbeat = handover(app.store, adapters, settings.server)
        try:
            await heartbeat.start()
            for adapter in adapters:
                await adapter.start()
                started.append(adapter)
                log.info("adapter %s started", adapter.name)
            events = DocumentEvents(app.knowledge, FEISHU_WATCH)
            if events.start(settings.feishu, started):
                log.info("feishu: document change events re-read their documents")
            # after the adapters started: the first sweep (right away) may post apologies
            schedule_recovery(
                scheduler,
                app.store,
                adapters,
                every=settings.server.recovery_sweep_seconds,
                deadline=timedelta(seconds=answer_deadline(settings)),
                window=timedelta(minutes=settings.server.recovery_window_minutes),
            )
            # Everything built so far (torch, the models, the indexes) lives as long as the
            # process: keep it out of the garbage collector's full passes, which otherwise
            # walk millions of objects and stall every answer for a few hundred ms.
            gc.collect()
            gc.freeze()
            yield
        finally:
            scheduler.shutdown(wait=False)
            if events is not None:
                await events.stop()
            for adapter in reversed(started):
                try:
                    await adapter.stop()
                except Exception:  # one adapter failing to stop must not keep the rest open
                    log.exception("adapter %s did not stop cleanly", adapter.name)
            await heartbeat.stop()  # after the answers in flight ended: none is left for others
            await application.close()
            if "holder" in held:
                held.pop("holder").release()

    server = FastAPI(title="teambot", lifespan=lifespan, docs_url=None, redoc_url=None)
    server.add_exception_handler(RequestValidationError, invalid_request)
    server.add_exception_handler(DBAPIError, database_unavailable)  # a restart: 503, not 500
    # a web chat message may carry files: room for [attachments] max_files of max_mb, and a
    # larger one is still taken so that the answer can say why it was not read
    chat_bytes = int(settings.attachments.max_files * settings.attachments.max_mb * 1_048_576)
    server.add_middleware(
        UploadLimit,
        max_bytes=settings.server.max_body_bytes,
        knowledge=settings.knowledge,
        chat_bytes=chat_bytes + 1_048_576,
    )
    server.include_router(
        admin_router(application.running, lambda: held["holder"].token if held else None)
    )
    adapter_registry = CollectorRegistry()
    adapter_registry.register(AdapterCollector(adapters))

    @server.get("/metrics")
    async def metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(adapter_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    for adapter in adapters:
        router = adapter.router()
        if router is not None:
            server.include_router(router)
    if settings.console.enabled:
        console = Console(
            settings.console, application.running, adapters, web_chat=settings.server.web_chat
        )
        mount_console(server, console)
    if settings.server.web_chat:
        from adapters.web.adapter import WebAdapter
        from bot.webchat import webchat_router

        web = next(a for a in adapters if isinstance(a, WebAdapter))
        server.include_router(webchat_router(application.running, web.sessions))
        page = files("bot").joinpath("static/chat.html").read_text(encoding="utf-8")

        @server.get("/", response_class=HTMLResponse)
        async def chat_page() -> str:
            return page

    @server.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @server.get("/readyz")
    async def readyz() -> JSONResponse:
        app = application.running()
        if app is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        checks: dict[str, Any] = {}
        ready = True
        try:
            async with app.store.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as error:  # readiness reports any failure, it never raises
            checks["database"] = f"error: {error}"
            ready = False
        checks["knowledge_chunks"] = await app.knowledge.store.count()
        if app.llm is None:
            checks["llm"] = "disabled (retrieval-only answers)"
        else:
            checks["llm"] = app.llm.status()
        for adapter in adapters:
            status = adapter.status()
            checks[f"adapter.{adapter.name}"] = {
                "connected": status.connected,
                "mode": status.mode,
                "last_event_age": status.last_event_age,
                "detail": status.detail,
            }
            if status.connected is False:
                ready = False
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return server


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


def answer_deadline(settings: Settings) -> float:
    """Seconds after which a claimed question without a final message counts as lost: longer
    than any live answer takes (model timeout, plus retrieval and the web lookup)."""
    configured = settings.server.recovery_deadline_seconds
    return configured or settings.llm.total_timeout + 60


class AdapterCollector(Collector):
    """Adapter connection state and last-event age, read from each adapter at scrape time."""

    def __init__(self, adapters: list[Adapter]) -> None:
        self._adapters = adapters

    def collect(self):  # type: ignore[no-untyped-def]
        connected = GaugeMetricFamily(
            "teambot_adapter_connected",
            "1 connected, 0 disconnected, -1 nothing to connect (webhook or web chat)",
            labels=["adapter", "mode"],
        )
        age = GaugeMetricFamily(
            "teambot_adapter_last_event_age_seconds",
            "Seconds since the adapter's last event or frame",
            labels=["adapter"],
        )
        for adapter in self._adapters:
            status = adapter.status()
            value = -1 if status.connected is None else int(status.connected)
            connected.add_metric([adapter.name, status.mode], value)
            if status.last_event_age is not None:
                age.add_metric([adapter.name], status.last_event_age)
        yield connected
        yield age
