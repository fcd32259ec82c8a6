"""Attachments' bytes in an object store (`[files] store = "s3"`): put when a message's
attachments are saved, read for the console, deleted when retention purges their rows. Without
an object store (`files` is None) the bytes stay in `thread_attachments.data`, as before."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence

from engine.store.records import Read
from knowledge.files import FileStore, FileStoreError

log = logging.getLogger(__name__)


async def put_bytes(
    files: FileStore | None, thread_id: int, reads: Sequence[Read]
) -> list[str | None]:
    """Each read's key in the store, or None where its bytes stay in the row (no store, nothing
    kept, or the store refused: the answer never waits on it)."""
    keys: list[str | None] = []
    for read in reads:
        if files is None or read.data is None:
            keys.append(None)
            continue
        key: str | None = f"attachments/{thread_id}/{uuid.uuid4().hex}"
        try:
            await files.put(str(key), read.data)
        except FileStoreError as error:
            log.warning("attachment %r kept in the database: %s", read.name, error)
            key = None
        keys.append(key)
    return keys


async def get_bytes(files: FileStore | None, key: str) -> bytes | None:
    """The bytes under `key`, or None (no store configured now, or it cannot be reached)."""
    if files is None:
        log.warning("attachment %s is in an object store, but [files] names none", key)
        return None
    try:
        return await files.get(key)
    except FileStoreError as error:
        log.warning("attachment %s not read: %s", key, error)
        return None


async def delete_bytes(files: FileStore | None, keys: Iterable[str]) -> int:
    """Delete purged attachments' objects; how many went (a failure is retried by nobody:
    logged, the object stays)."""
    gone = 0
    for key in keys:
        try:
            gone += bool(files is not None and await files.delete(key))
        except FileStoreError as error:
            log.warning("purged attachment %s left in the object store: %s", key, error)
    return gone
