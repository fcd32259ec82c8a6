"""Files kept for every replica, not on one replica's disk: console uploads' bytes.

One door (`base.FileStore`: put, get, list, delete by key), two rooms: `database.py` (the
default: table `stored_files` in teambot's own database) and `s3.py` (an S3-compatible object
store, `[files] store = "s3"`); `open_files` picks one from `[files]`. A store module is
imported only when chosen, so aiobotocore loads only for S3.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from knowledge.files.base import FileStore, FileStoreError, StoredFile
from knowledge.files.config import FileSettings, S3Settings

__all__ = [
    "FileSettings",
    "FileStore",
    "FileStoreError",
    "S3Settings",
    "StoredFile",
    "open_files",
    "probe",
]


def open_files(settings: FileSettings, engine: AsyncEngine) -> FileStore:
    """The store `[files]` names; `engine` is the database the default store keeps rows in."""
    if settings.store == "s3":
        from knowledge.files.s3 import S3Files

        return S3Files(settings.s3)
    from knowledge.files.database import DatabaseFiles

    return DatabaseFiles(engine)


async def probe(files: FileStore) -> tuple[str, str]:
    """(ok | error, what `teambot doctor` says about the store)."""
    try:
        kept = await files.list("uploads/")
    except FileStoreError as error:
        return "error", str(error)
    where = "the database (table stored_files)" if files.name == "database" else "the S3 bucket"
    return "ok", f"{len(kept)} uploaded files in {where}, shared by every replica"
