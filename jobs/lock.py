"""One replica at a time: a PostgreSQL advisory lock per job (a process-local one on SQLite).

The lock is held on one pooled connection for the job's run and released when it ends (or when
the connection drops, should the replica die). SQLite is a single-host database, so a lock in
this process is enough there.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger(__name__)

_held: set[tuple[str, str]] = set()  # (database, job) held in this process


def lock_key(name: str) -> int:
    """The advisory lock key of job `name`: fixed, a signed 64-bit integer."""
    digest = hashlib.sha256(f"teambot:job:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@asynccontextmanager
async def job_lock(engine: AsyncEngine, name: str) -> AsyncIterator[bool]:
    """Yields True when this caller holds the lock for `name`, False when someone else does.

    Never waits: a job that finds the lock taken skips this run."""
    local = (engine.url.render_as_string(hide_password=True), name)
    if local in _held:
        yield False
        return
    _held.add(local)
    try:
        if engine.dialect.name != "postgresql":
            yield True
            return
        key = lock_key(name)
        async with engine.connect() as connection:
            got = bool(
                await connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key})
            )
            await connection.commit()
            try:
                yield got
            finally:
                if got:
                    await connection.scalar(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
                    await connection.commit()
        if not got:
            log.debug("job %s is running on another replica; skipped here", name)
    finally:
        _held.discard(local)
