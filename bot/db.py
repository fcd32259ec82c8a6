"""Schema migrations: Alembic driven from code, with the scripts shipped inside the package
(bot/migrations: the scripts in `versions/`, the tables they cover in its `__init__`).

`upgrade` and `current` are synchronous and run their own event loop (the async Alembic
environment calls `asyncio.run`), so they must not be called on a thread whose event loop is
running. From async code use `await upgrade_async(url)` (runs `upgrade` on a worker thread) and
`await current_async(url)`. Alembic itself is imported only when a migration may be due:
`upgrade_async` first compares the database's version row with the newest script (read as
text), which spares every start of an up-to-date database the ~0.1 s of CPU Alembic costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_REVISION = re.compile(r"^revision\s*(?::[^=\n]*)?=\s*['\"]([^'\"]+)['\"]", re.MULTILINE)
_DOWN_REVISION = re.compile(r"^down_revision\s*(?::[^=\n]*)?=(.*)$", re.MULTILINE)


def alembic_config(url: str, *, connect_args: Mapping[str, Any] | None = None) -> Config:
    """An Alembic Config for `url` without any alembic.ini (connect_args go to the DB driver)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("file_template", "%%(rev)s_%%(slug)s")
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # ConfigParser interpolation
    cfg.attributes["connect_args"] = dict(connect_args or {})
    return cfg


def head() -> str:
    """The newest revision shipped with this version of teambot."""
    from alembic.script import ScriptDirectory

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
    from alembic import command

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
    """`upgrade` on a worker thread, for callers inside an event loop; nothing (and no Alembic)
    when the database is already at the newest script."""
    if revision == "head" and await _at_head(url, connect_args):
        return
    await asyncio.to_thread(upgrade, url, revision, connect_args=connect_args)


async def _at_head(url: str, connect_args: Mapping[str, Any] | None) -> bool:
    """Whether the database's version row names the newest script; False when unsure (no
    database yet, no version table, scripts whose head cannot be read as text): then Alembic
    decides."""
    shipped = shipped_head()
    if shipped is None:
        return False
    _prepare_sqlite(url)
    engine = create_async_engine(url, poolclass=NullPool, connect_args=dict(connect_args or {}))
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT version_num FROM alembic_version"))).all()
    except DBAPIError:  # no version table: a new database
        return False
    finally:
        await engine.dispose()
    return [row[0] for row in rows] == [shipped]


def shipped_head() -> str | None:
    """The newest revision, read from the scripts' `revision` and `down_revision` lines without
    importing Alembic; None unless exactly one revision is nobody's parent."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for script in (MIGRATIONS / "versions").glob("*.py"):
        source = script.read_text(encoding="utf-8")
        revision, down = _REVISION.search(source), _DOWN_REVISION.search(source)
        if revision is None or down is None:
            return None
        revisions.add(revision.group(1))
        parents.update(re.findall(r"['\"]([^'\"]+)['\"]", down.group(1)))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 and parents <= revisions else None


async def current_async(url: str, *, connect_args: Mapping[str, Any] | None = None) -> str | None:
    """`current` for callers inside an event loop."""
    return await _current(url, connect_args)


async def _current(url: str, connect_args: Mapping[str, Any] | None) -> str | None:
    from alembic.runtime.migration import MigrationContext

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
    """SQLite creates the file but not its directory: make `./data/` on first start. Then put
    the file in WAL mode once, before anything else opens it (the mode is kept in the file):
    switching a file that another connection is writing fails at once with "database is
    locked", whatever the busy timeout, and the start's catch-up refresh writes early."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")


def _refuse_inside_loop(name: str, async_name: str) -> None:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"bot.db.{name}() runs its own event loop and cannot be called inside a running one:"
        f" use `await bot.db.{async_name}(...)` instead"
    )
