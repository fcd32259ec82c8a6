"""Alembic environment for teambot: async URLs, one version table for every package's tables.

Run through `bot.db` (which builds the Config in code), not the `alembic` command line. The
tables it compares against are every package's own (`bot/migrations/__init__.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from bot.migrations import TARGET_METADATA
from knowledge.timestamps import UTCDateTime

config = context.config


def render_item(type_: str, obj: Any, autogen_context: AutogenContext) -> str | Literal[False]:
    """Render our column types as plain SQLAlchemy types so migrations import nothing of ours."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    context.configure(
        target_metadata=TARGET_METADATA,
        render_as_batch=True,  # SQLite cannot ALTER most things; batch mode recreates the table
        render_item=render_item,
        compare_type=True,
        **kwargs,
    )


def run_migrations_offline() -> None:
    """Emit SQL instead of running it (`--sql`)."""
    _configure(url=config.get_main_option("sqlalchemy.url"), literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


# pg_advisory_xact_lock key: replicas starting together on one PostgreSQL migrate one at a time
MIGRATION_LOCK = int.from_bytes(
    hashlib.sha256(b"teambot:migrations").digest()[:8], "big", signed=True
)


def do_run_migrations(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # The first replica migrates; the others wait here until it commits, then read the
            # version it wrote and have nothing to do. (DDL is transactional on PostgreSQL.)
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url")
    assert url, "sqlalchemy.url is not set: build the Config with bot.db.alembic_config(url)"
    connectable = create_async_engine(
        url,
        poolclass=pool.NullPool,
        connect_args=config.attributes.get("connect_args") or {},
    )
    try:
        async with connectable.connect() as connection:
            await connection.run_sync(do_run_migrations)
    finally:
        await connectable.dispose()


if context.is_offline_mode():
    run_migrations_offline()
elif (shared := config.attributes.get("connection")) is not None:
    # a caller already holds a (sync-facing) connection, e.g. inside AsyncConnection.run_sync
    do_run_migrations(shared)
else:
    asyncio.run(run_async_migrations())
