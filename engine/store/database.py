"""The SQLAlchemy engine for SQLite or PostgreSQL, as the store wants it, and `Database.unit`:
a few statements in one transaction for the paths every message takes."""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy
from sqlalchemy import Connection, Engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import StaticPool

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 30_000
# A pooled PostgreSQL connection that sat unused this long is pinged before use (see
# create_engine); a busy connection is not, as SQLAlchemy's pool_pre_ping would (three round
# trips on asyncpg for every checkout).
IDLE_PING_SECONDS = 10.0


class Database:
    """An engine with its session maker: what every store holds, shared by the stores of one
    database (engine/store/conversations.py, engine/store/handoffs.py)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self.dialect = engine.dialect.name
        if self.dialect not in ("sqlite", "postgresql"):
            raise ValueError(
                f"unsupported database {self.dialect!r}: use sqlite+aiosqlite:///PATH"
                " or postgresql+asyncpg://USER@HOST:PORT/DB"
            )
        # INSERT for this dialect, with its ON CONFLICT clauses: chosen once, not per statement
        self.insert: Callable[[Any], Any] = (
            postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        )

    async def unit(self, work: Callable[[Connection], T]) -> T:
        """`work(connection)` in one transaction, committed when it returns, rolled back when
        it raises. `work` is plain synchronous SQLAlchemy. On a SQLite file it runs whole on a
        worker thread over its own sqlite3 connection: one thread hop for the transaction,
        where aiosqlite makes four for every statement (cursor, execute, fetch, close) and one
        for the commit. On PostgreSQL (and in-memory SQLite) it runs on the async engine's
        connection (`run_sync`): the same statements, the same round trips as written out."""
        twin = _twin(self.engine)
        if twin is None:
            async with self.engine.begin() as conn:
                return await conn.run_sync(work)
        return await asyncio.get_running_loop().run_in_executor(twin.threads, twin.run, work)

    async def close(self) -> None:
        twin = _TWINS.pop(self.engine.sync_engine, None)
        if twin is not None:
            await asyncio.to_thread(twin.close)
        await self.engine.dispose()


class _Twin:
    """A synchronous engine on the same SQLite file as an async one, and the threads it runs
    on (a few: a statement waiting for another process's write lock holds only its thread)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.threads = ThreadPoolExecutor(max_workers=4, thread_name_prefix="sqlite-unit")

    def run(self, work: Callable[[Connection], T]) -> T:
        with self.engine.begin() as conn:
            return work(conn)

    def close(self) -> None:
        self.threads.shutdown(wait=True)
        self.engine.dispose()


_TWINS: weakref.WeakKeyDictionary[Engine, _Twin] = weakref.WeakKeyDictionary()


def _twin(engine: AsyncEngine) -> _Twin | None:
    """The synchronous twin of a file SQLite engine (made once per engine); None otherwise."""
    sync = engine.sync_engine
    if sync.dialect.name != "sqlite":
        return None
    twin = _TWINS.get(sync)
    if twin is None:
        database = sync.url.database or ""
        if database in ("", ":memory:") or "mode=memory" in str(sync.url):
            return None  # one shared in-memory database: only the async engine's connection
        plain = sqlalchemy.create_engine(
            sync.url.set(drivername="sqlite"), echo=sync.echo, pool_size=4, max_overflow=4
        )
        event.listen(plain, "connect", _sqlite_pragmas)
        twin = _TWINS.setdefault(sync, _Twin(plain))
    return twin


def create_engine(
    url: str,
    *,
    echo: bool = False,
    connect_args: Mapping[str, Any] | None = None,
    idle_ping: float = IDLE_PING_SECONDS,
    pool_size: int = 5,
) -> AsyncEngine:
    """An async engine for `url`; for SQLite: parent directory created, WAL, busy timeout, FKs on.

    `connect_args` go to the driver, e.g. `{"server_settings": {"search_path": "teambot"}}`.
    For PostgreSQL, `pool_size` connections stay open (10 more while busy); a connection idle for `idle_ping` seconds is pinged before it is handed out
    and replaced when the server has dropped it (a restart, a failover, an idle timeout).
    """
    parsed = make_url(url)
    args = dict(connect_args or {})
    if parsed.get_backend_name() != "sqlite":
        # Connections above pool_size are closed when returned: a pool too small for the load
        # opens and closes connections all the time.
        server = create_async_engine(
            url, echo=echo, connect_args=args, pool_size=pool_size, max_overflow=10
        )
        _ping_when_idle(server, idle_ping)
        return server
    database = parsed.database or ""
    if database in ("", ":memory:"):
        # one shared connection, or every connection would see its own empty database
        eng = create_async_engine(url, echo=echo, poolclass=StaticPool, connect_args=args)
    else:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        eng = create_async_engine(url, echo=echo, connect_args=args)

    event.listen(eng.sync_engine, "connect", _sqlite_pragmas)
    return eng


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # busy_timeout first: every later statement waits for a writer instead of failing with
    # "database is locked"; WAL (readers never block the writer) is set only when the file is
    # not in it yet: switching while another connection writes fails at once.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode")
    if str(cursor.fetchone()[0]).lower() != "wal":  # bot/db.py sets it before the start
        cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _ping_when_idle(server: AsyncEngine, idle: float) -> None:
    """Pessimistic disconnect handling for connections that sat in the pool `idle` seconds."""

    @event.listens_for(server.sync_engine, "checkin")
    def _checked_in(_dbapi_connection: Any, record: Any) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(server.sync_engine, "checkout")
    def _checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("idle_since")
        if since is None or time.monotonic() - since < idle:
            return
        try:
            server.dialect.do_ping(dbapi_connection)
        except Exception as error:
            # the pool discards this connection and hands out a fresh one
            raise DisconnectionError(f"a pooled connection was dead: {error}") from error
