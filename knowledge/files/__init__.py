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

__all__ = ["FileSettings", "FileStore", "FileStoreError", "S3Settings", "StoredFile", "open_files"]


def open_files(settings: FileSettings, engine: AsyncEngine) -> FileStore:
    """The store `[files]` names; `engine` is the database the default store keeps rows in."""
    if settings.store == "s3":
        from knowledge.files.s3 import S3Files

        return S3Files(settings.s3)
    from knowledge.files.database import DatabaseFiles

    return DatabaseFiles(engine)
