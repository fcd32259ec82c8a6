"""Store fixtures: every store test runs on SQLite and on the local PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.db import upgrade_async
from engine.store.conversations import ConversationStore
from tests.helpers import pg_schema, sqlite_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ConversationStore]:
    """A ConversationStore on a schema made by the real Alembic migrations."""
    if request.param == "sqlite":
        url = sqlite_url(tmp_path)
        await upgrade_async(url)
        store = ConversationStore.from_url(url)
        try:
            yield store
        finally:
            await store.close()
        return
    async with pg_schema() as (url, connect_args):
        await upgrade_async(url, connect_args=connect_args)
        store = ConversationStore.from_url(url, connect_args=connect_args)
        try:
            yield store
        finally:
            await store.close()
