"""Helpers shared by tests in several packages (fixtures live in conftest.py files)."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from knowledge import KnowledgeSettings

PG_URL = os.environ.get("TEAMBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

_pg_unreachable: str | None = None  # remembered so later tests skip without waiting again


@asynccontextmanager
async def pg_schema() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A fresh schema in the test database, dropped afterwards; yields (url, connect_args).

    Skips the test, with the URL and the error, only when PostgreSQL cannot be connected to.
    """
    global _pg_unreachable
    if _pg_unreachable:
        pytest.skip(_pg_unreachable)
    admin = create_async_engine(PG_URL, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        conn = await admin.connect()
    except Exception as e:  # refused, timed out, unknown host or role: all mean "not here"
        await admin.dispose()
        _pg_unreachable = f"PostgreSQL at {PG_URL} is unreachable ({type(e).__name__}: {e})"
        pytest.skip(_pg_unreachable)
    schema = f"teambot_test_{secrets.token_hex(6)}"
    try:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.commit()
        yield PG_URL, {"server_settings": {"search_path": schema}}
    finally:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await conn.commit()
        await conn.close()
        await admin.dispose()


def sqlite_url(tmp_path: Path) -> str:
    # a missing directory on purpose: the code must create it, as for ./data/ on first start
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'teambot.db'}"


def kb_settings(persist_dir: Path) -> KnowledgeSettings:
    """Knowledge settings for tests: a given chroma folder, a test collection."""
    return KnowledgeSettings(persist_dir=persist_dir, collection="test-kb")
