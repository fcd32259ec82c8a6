"""Health, readiness and metrics: /healthz (the process answers), /readyz (the database, the
knowledge base, the model server and every adapter, 503 until teambot has opened), /metrics
(Prometheus: the process's own registry plus each adapter's connection state)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from adapters.base import Adapter
from bot.app import App


def health_router(running: Callable[[], App | None], adapters: Sequence[Adapter]) -> APIRouter:
    """GET /healthz, /readyz and /metrics."""
    router = APIRouter()
    adapter_registry = CollectorRegistry()
    adapter_registry.register(AdapterCollector(adapters))

    @router.get("/metrics")
    async def metrics() -> Response:
        body = generate_latest(REGISTRY) + generate_latest(adapter_registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    async def readyz() -> JSONResponse:
        app = running()
        if app is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        checks, ready = await readiness(app, adapters)
        body = {"status": "ready" if ready else "not ready", "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    return router


async def readiness(app: App, adapters: Sequence[Adapter]) -> tuple[dict[str, Any], bool]:
    """Each part's state, and whether teambot is ready: the database answers and no adapter
    that keeps a connection has lost it."""
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
    checks["llm"] = "disabled (retrieval-only answers)" if app.llm is None else app.llm.status()
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
    return checks, ready


class AdapterCollector(Collector):
    """Adapter connection state and last-event age, read from each adapter at scrape time."""

    def __init__(self, adapters: Sequence[Adapter]) -> None:
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
