"""Migrations: real Alembic upgrades on SQLite and PostgreSQL, and no drift from the models."""

from __future__ import annotations

import asyncio
import json
import subprocess
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
    alembic_config,
    current,
    current_async,
    head,
    shipped_head,
    upgrade,
    upgrade_async,
)
from bot.migrations import TARGET_METADATA
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
    "replicas",
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


def test_the_head_read_as_text_is_alembics() -> None:
    assert shipped_head() == head()


def test_an_up_to_date_database_starts_without_alembic(tmp_path: Path) -> None:
    """Every start checks the version row first: Alembic (~0.1 s of CPU) loads only when a
    migration may be due, and a database one revision behind is still migrated."""
    url = sqlite_url(tmp_path)
    upgrade(url)
    script = (
        "import asyncio, json, sys; from bot.db import upgrade_async; "
        f"asyncio.run(upgrade_async({url!r})); "
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('alembic'))))"
    )
    loaded = _run_python(script)
    assert loaded == []
    command.downgrade(alembic_config(url), "-1")
    assert current(url) != head()
    assert _run_python(script)  # Alembic did run
    assert current(url) == head()


def _run_python(script: str) -> Any:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=root, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


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


def test_threads_learn_their_opener_at_the_upgrade(tmp_path: Path) -> None:
    """Migration 0012: a thread going on at the upgrade gets its first asker as its opener, so
    the core's window rule (where a platform has no threads) continues it."""
    url = sqlite_url(tmp_path)
    upgrade(url, revision="0011")
    engine = create_engine(url.replace("+aiosqlite", ""), poolclass=NullPool)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO threads (id, platform, tenant, chat_id, thread_id, state,"
                " state_changed_at, created_at, last_message_at) VALUES (1, 'dingtalk', 'c',"
                " 'cid', 'ada@1', 'open', '2026-01-01', '2026-01-01', '2026-01-01')"
            )
        )
        for turn, asker in ((1, "ada"), (2, "bob")):
            conn.execute(
                text(
                    "INSERT INTO turns (id, thread_id, message_id, asker_id, asker_name,"
                    " question, answer, reasoning, citations, outcome, language, prompt_tokens,"
                    " completion_tokens, retrieval_s, total_s, created_at) VALUES"
                    f" ({turn}, 1, 'm{turn}', '{asker}', '', 'q', 'a', '', '[]', 'answered',"
                    " 'en', 0, 0, 0, 0, '2026-01-01')"
                )
            )
    upgrade(url)
    with engine.connect() as conn:
        row = conn.execute(text("SELECT asker_id, chat_type FROM threads")).one()
    engine.dispose()
    assert tuple(row) == ("ada", None)
