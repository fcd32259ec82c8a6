"""The door every file store walks through: put, get, list and delete bytes by key.

Keys are relative paths ("uploads/handbook.pdf"); a store never interprets them. `digest`
changes whenever the bytes do (a SHA-256 in the database, the object's ETag in S3), so a
source kind can use it as a document's version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from knowledge.errors import KnowledgeError


class FileStoreError(KnowledgeError):
    """The store could not be reached or refused; the message says what to check."""


@dataclass(frozen=True, slots=True)
class StoredFile:
    """One kept file, without its bytes."""

    key: str
    size: int
    digest: str
    modified_at: datetime


class FileStore(Protocol):
    """Bytes by key, the same for every replica."""

    name: str  # "database" or "s3", for logs and the doctor

    async def put(self, key: str, data: bytes) -> StoredFile:
        """Keep `data` under `key`, replacing what was there."""
        ...

    async def get(self, key: str) -> bytes | None:
        """The bytes under `key`, or None when there are none."""
        ...

    async def list(self, prefix: str) -> list[StoredFile]:
        """Every file whose key starts with `prefix`, by key."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove one file; whether it was there."""
        ...

    async def close(self) -> None: ...
