"""The default file store: a table in teambot's own database (`stored_files`), so every replica
that shares the database shares the files, with nothing more to run."""

from __future__ import annotations

import hashlib
from datetime import datetime

from sqlalchemy import Integer, LargeBinary, MetaData, String, delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from knowledge.catalog import NAMING_CONVENTION
from knowledge.files.base import StoredFile
from knowledge.timestamps import UTCDateTime, utcnow


class FilesBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class FileRow(FilesBase):
    """One kept file: its bytes and what a listing shows (migration 0014)."""

    __tablename__ = "stored_files"

    key: Mapped[str] = mapped_column(String(512), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(64))
    modified_at: Mapped[datetime] = mapped_column(UTCDateTime)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class DatabaseFiles:
    """Files as rows of `stored_files` on the given engine (the catalog's)."""

    name = "database"

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def put(self, key: str, data: bytes) -> StoredFile:
        kept = StoredFile(key, len(data), hashlib.sha256(data).hexdigest(), utcnow())
        values = {
            "size": kept.size,
            "digest": kept.digest,
            "modified_at": kept.modified_at,
            "data": data,
        }
        async with self._engine.begin() as conn:
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            await conn.execute(
                dialect.insert(FileRow)
                .values(key=key, **values)
                .on_conflict_do_update(index_elements=["key"], set_=values)
            )
        return kept

    async def get(self, key: str) -> bytes | None:
        async with self._engine.connect() as conn:
            data = await conn.scalar(select(FileRow.data).where(FileRow.key == key))
        return bytes(data) if data is not None else None

    async def list(self, prefix: str) -> list[StoredFile]:
        query = (
            select(FileRow.key, FileRow.size, FileRow.digest, FileRow.modified_at)
            .where(FileRow.key.startswith(prefix, autoescape=True))
            .order_by(FileRow.key)
        )
        async with self._engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [StoredFile(r.key, r.size, r.digest, r.modified_at) for r in rows]

    async def delete(self, key: str) -> bool:
        async with self._engine.begin() as conn:
            result = await conn.execute(delete(FileRow).where(FileRow.key == key))
        return bool(result.rowcount)

    async def close(self) -> None:
        return None  # the engine is the catalog's: it closes it
