"""Schema migrations: Alembic driven from code, with the scripts shipped inside the package.

`upgrade` and `current` are synchronous and run their own event loop (the async Alembic
environment calls `asyncio.run`), so they must not be called on a thread whose event loop is
running. From async code use `await upgrade_async(url)` (runs `upgrade` on a worker thread) and
`await current_async(url)`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.web.tables import WebChatBase
from bot.console.tables import ConsoleBase
from engine.tables import EngineBase
from knowledge.catalog import CatalogBase
from knowledge.files.database import FilesBase

# Every package that owns tables adds its metadata here (one line); migrations/env.py and the
# schema drift test both read this list.
TARGET_METADATA: list[MetaData] = [
    EngineBase.metadata,
    CatalogBase.metadata,
    ConsoleBase.metadata,
    WebChatBase.metadata,
    FilesBase.metadata,
]

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str, *, connect_args: Mapping[str, Any] | None = None) -> Config:
    """An Alembic Config for `url` without any alembic.ini (connect_args go to the DB driver)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    cfg.attributes["connect_args"] = dict(connect_args or {})
    return cfg


def head() -> str:
    """The newest revision shipped with this version of teambot."""
    cfg = alembic_config("sqlite://")
    revision = ScriptDirectory.from_config(cfg).get_current_head()
    assert revision is not None, f"no migrations found under {MIGRATIONS}"
    return revision


def upgrade(
    url: str, revision: str = "head", *, connect_args: Mapping[str, Any] | None = None
) -> None:
    """Migrate the database at `url` to `revision`; a no-op when it is already there.

    Synchronous, with its own event loop: from async code use `upgrade_async`.
    """
    _refuse_inside_loop("upgrade", "upgrade_async")
    _prepare_sqlite(url)
    command.upgrade(alembic_config(url, connect_args=connect_args), revision)


def current(url: str, *, connect_args: Mapping[str, Any] | None = None) -> str | None:
    """The revision the database at `url` is at; None before the first upgrade.

    Synchronous, with its own event loop: from async code use `current_async`.
    """
    _refuse_inside_loop("current", "current_async")
    return asyncio.run(_current(url, connect_args))


async def upgrade_async(
    url: str, revision: str = "head", *, connect_args: Mapping[str, Any] | None = None
) -> None:
    """`upgrade` on a worker thread, for callers inside an event loop."""
    await asyncio.to_thread(upgrade, url, revision, connect_args=connect_args)


async def current_async(url: str, *, connect_args: Mapping[str, Any] | None = None) -> str | None:
    """`current` for callers inside an event loop."""
    return await _current(url, connect_args)


async def _current(url: str, connect_args: Mapping[str, Any] | None) -> str | None:
    _prepare_sqlite(url)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=dict(connect_args or {}))
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(
                lambda sync_conn: MigrationContext.configure(sync_conn).get_current_revision()
            )
    finally:
        await engine.dispose()


def _prepare_sqlite(url: str) -> None:
    """SQLite creates the file but not its directory: make `./data/` on first start."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)


def _refuse_inside_loop(name: str, async_name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"bot.db.{name}() runs its own event loop and cannot be called inside a running one:"
        f" use `await bot.db.{async_name}(...)` instead"
    )
