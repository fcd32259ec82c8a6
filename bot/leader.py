"""Leadership for connections a platform allows once per app (DingTalk Stream): a PostgreSQL
advisory lock held on a dedicated connection. When the holder dies its connection drops, the
lock goes with it, and a standby replica takes over at its next try (every few seconds)."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from jobs.lock import lock_key

log = logging.getLogger(__name__)


class _Lease:
    def __init__(self, name: str, connection: AsyncConnection | None, check_every: float) -> None:
        self.name, self.lost = name, asyncio.Event()
        self._connection = connection
        self._beat = asyncio.create_task(self._heartbeat(check_every)) if connection else None

    async def _heartbeat(self, every: float) -> None:
        """A dead database connection means the lock may already be someone else's."""
        assert self._connection is not None
        while True:
            await asyncio.sleep(every)
            try:
                await asyncio.wait_for(self._connection.execute(text("SELECT 1")), every)
                await self._connection.commit()
            except Exception as error:  # any failure: stop trusting the lease
                log.warning("leadership of %s lost: %s", self.name, error)
                self.lost.set()
                return

    async def release(self) -> None:
        if self._beat is not None:
            self._beat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._beat
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await self._connection.execute(
                    text("SELECT pg_advisory_unlock(:key)"), {"key": lock_key(self.name)}
                )
            with contextlib.suppress(Exception):
                await self._connection.close()
            self._connection = None


class DatabaseLeadership:
    """Advisory-lock leadership on PostgreSQL; on SQLite (one process) this replica always leads."""

    def __init__(self, url: str, *, check_every: float = 2.0) -> None:
        self._url, self._check_every = url, check_every
        self._engine: AsyncEngine | None = None

    async def acquire(self, name: str) -> _Lease | None:
        if not self._url.startswith("postgresql"):
            return _Lease(name, None, self._check_every)
        if self._engine is None:
            self._engine = create_async_engine(self._url, poolclass=NullPool)
        connection = await self._engine.connect()
        try:
            held = await connection.scalar(
                text("SELECT pg_try_advisory_lock(:key)"), {"key": lock_key(name)}
            )
            await connection.commit()
        except Exception:
            await connection.close()
            raise
        if not held:
            await connection.close()
            return None
        log.info("this replica now holds %s", name)
        return _Lease(name, connection, self._check_every)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
