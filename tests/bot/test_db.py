"""Migrations: real Alembic upgrades on SQLite and PostgreSQL, and no drift from the models."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, inspect, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from bot.db import (
    MIGRATIONS,
    TARGET_METADATA,
    alembic_config,
    current,
    current_async,
    head,
    upgrade,
    upgrade_async,
)
from tests.helpers import pg_schema, sqlite_url

TABLES = {
    "threads",
    "turns",
    "processed_events",
    "feedback",
    "knowledge_sources",
    "knowledge_documents",
    "knowledge_runs",
    "knowledge_state",
    "handoffs",
    "faq_candidates",
    "thread_attachments",
    "console_agents",
    "console_sessions",
    "web_chat_owners",
    "web_chat_keys",
    "stored_files",
    "alembic_version",
}


def _schema(conn: Connection) -> dict[str, Any]:
    """Tables, columns, indexes and unique constraints: enough to see a rerun changed nothing."""
    insp = inspect(conn)
    return {
        table: (
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(table)],
            sorted(i["name"] or "" for i in insp.get_indexes(table)),
            sorted(u["name"] or "" for u in insp.get_unique_constraints(table)),
        )
        for table in sorted(insp.get_table_names())
    }


def _diffs(conn: Connection) -> list[Any]:
    context = MigrationContext.configure(conn, opts={"compare_type": True})
    return compare_metadata(context, TARGET_METADATA)  # type: ignore[arg-type]


def test_migrations_ship_inside_the_package() -> None:
    assert MIGRATIONS.parent == Path(__file__).resolve().parents[2] / "bot"
    assert (MIGRATIONS / "env.py").is_file()
    assert (MIGRATIONS / "script.py.mako").is_file()
    assert head() == "0014"


def test_upgrade_sqlite_fresh_file(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)  # its directory does not exist yet
    assert current(url) is None

    upgrade(url)

    assert current(url) == head()
    sync = create_engine(url.replace("+aiosqlite", ""), poolclass=NullPool)
    try:
        with sync.connect() as conn:
            assert set(inspect(conn).get_table_names()) == TABLES
            assert conn.execute(
                text("SELECT version_num FROM alembic_version")
            ).scalars().all() == [head()]
            assert _diffs(conn) == []
            before = _schema(conn)
            conn.execute(
                text(
                    "INSERT INTO processed_events (platform, message_id, thread_key,"
                    " received_at) VALUES ('slack', 'm1', '[]', '2026-01-01 00:00:00')"
                )
            )
            conn.commit()

        upgrade(url)  # again: nothing to do, nothing lost

        with sync.connect() as conn:
            assert _schema(conn) == before
            assert conn.execute(text("SELECT count(*) FROM processed_events")).scalar_one() == 1
            assert conn.execute(text("SELECT count(*) FROM alembic_version")).scalar_one() == 1
    finally:
        sync.dispose()
    assert current(url) == head()


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    upgrade(url)
    command.downgrade(alembic_config(url), "base")
    assert current(url) is None
    upgrade(url)
    assert current(url) == head()


async def test_sync_upgrade_refuses_a_running_loop(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="upgrade_async"):
        upgrade(sqlite_url(tmp_path))
    with pytest.raises(RuntimeError, match="current_async"):
        current(sqlite_url(tmp_path))


async def test_upgrade_async_sqlite(tmp_path: Path) -> None:
    url = sqlite_url(tmp_path)
    await upgrade_async(url)
    assert await current_async(url) == head()


@pytest.mark.postgres
async def test_replicas_starting_together_migrate_once() -> None:
    """Replicas starting at once on an empty database all come up. Separate processes, like
    replicas: Alembic's context is process-global, so threads cannot show this."""
    async with pg_schema() as (url, connect_args):
        script = (
            "import json, sys; from bot.db import upgrade; "
            "upgrade(sys.argv[1], connect_args=json.loads(sys.argv[2]))"
        )
        runs = [
            await asyncio.create_subprocess_exec(
                sys.executable, "-c", script, url, json.dumps(connect_args),
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(3)
        ]  # fmt: skip
        for run in runs:
            _, errors = await asyncio.wait_for(run.communicate(), 120)
            assert run.returncode == 0, errors.decode()
        assert await current_async(url, connect_args=connect_args) == head()


@pytest.mark.postgres
async def test_upgrade_postgres_fresh_schema() -> None:
    async with pg_schema() as (url, connect_args):
        assert await current_async(url, connect_args=connect_args) is None

        await upgrade_async(url, connect_args=connect_args)
        assert await current_async(url, connect_args=connect_args) == head()

        engine = create_async_engine(url, poolclass=NullPool, connect_args=connect_args)
        try:
            async with engine.connect() as conn:
                assert set(await conn.run_sync(lambda c: inspect(c).get_table_names())) == TABLES
                assert await conn.run_sync(_diffs) == []
                before = await conn.run_sync(_schema)

            await upgrade_async(url, connect_args=connect_args)  # again: a no-op

            async with engine.connect() as conn:
                assert await conn.run_sync(_schema) == before
                versions = await conn.execute(text("SELECT version_num FROM alembic_version"))
                assert versions.scalars().all() == [head()]
        finally:
            await engine.dispose()
