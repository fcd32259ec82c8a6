"""A request that meets an unreachable database gets a 503 in words, not a 500."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError

from bot.outage import UNAVAILABLE, database_unavailable
from bot.server import create_server
from bot.settings import Settings


async def test_a_database_restart_is_a_503_with_words(tmp_path) -> None:  # type: ignore[no-untyped-def]
    settings = Settings(storage={"url": f"sqlite+aiosqlite:///{tmp_path / 'x.db'}"})
    assert create_server(settings).exception_handlers[DBAPIError] is database_unavailable
    app = FastAPI()
    app.add_exception_handler(DBAPIError, database_unavailable)

    @app.post("/api/chat")
    async def chat() -> None:
        raise DBAPIError("SELECT 1", {}, ConnectionError("the database system is shutting down"))

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post("/api/chat")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.json() == {"error": UNAVAILABLE}
    assert "稍后再试" in UNAVAILABLE and "try again" in UNAVAILABLE
