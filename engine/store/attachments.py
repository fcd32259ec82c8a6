"""The attachments read in a thread (`store.attachments`): saved with the thread they came in,
read back only for that thread — never another thread or chat — and purged with it.

The bytes kept for the console are a column of the row (the shared database), or, when an
object store keeps teambot's files (`[files] store = "s3"`, `files` set at wiring), an object
under "attachments/<thread id>/" whose key the row holds (engine/store/attachment_files.py)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import bindparam, insert, or_, select

from engine import clean
from engine.store.attachment_files import get_bytes, put_bytes
from engine.store.database import Database
from engine.store.records import Read
from engine.store.tables import ThreadAttachment, utcnow
from knowledge.files import FileStore

_FOR_THREAD = (
    select(
        ThreadAttachment.id,
        ThreadAttachment.name,
        ThreadAttachment.kind,
        ThreadAttachment.mime,
        ThreadAttachment.size,
        ThreadAttachment.text,
        ThreadAttachment.error,
        or_(ThreadAttachment.data.is_not(None), ThreadAttachment.stored_key.is_not(None)).label(
            "kept"
        ),
    )
    .where(ThreadAttachment.thread_id == bindparam("f_thread"))
    .order_by(ThreadAttachment.id.desc())
    .limit(bindparam("f_limit"))
)

# Texts kept per thread for later turns: the newest files first.
THREAD_FILES = 10


class AttachmentStore:
    """Composed into `ConversationStore` as `store.attachments`."""

    def __init__(self, database: Database) -> None:
        self._engine = database.engine
        self.files: FileStore | None = None  # an object store for the bytes, else the row

    async def add(self, thread_id: int, message_id: str, reads: Sequence[Read]) -> list[Read]:
        """Store each attachment of one message; the reads with their row ids."""
        stored: list[Read] = []
        now = utcnow()
        keys = await put_bytes(self.files, thread_id, reads)
        async with self._engine.begin() as conn:
            for read, key in zip(reads, keys, strict=True):
                values = {
                    "thread_id": thread_id,
                    "message_id": message_id,
                    "name": clean.text(read.name, 255),
                    "kind": read.kind[:16],
                    "mime": read.mime[:128],
                    "size": read.size,
                    # PostgreSQL refuses NUL in text: OCR and PDFs can produce it
                    "text": clean.text(read.text, len(read.text) + 1),
                    "error": clean.text(read.error, len(read.error) + 1),
                    "data": read.data if key is None else None,
                    "stored_key": key,
                    "created_at": now,
                }
                row_id = await conn.scalar(
                    insert(ThreadAttachment).values(values).returning(ThreadAttachment.id)
                )
                stored.append(_with_id(read, int(row_id or 0)))
        return stored

    async def for_thread(self, thread_id: int, *, limit: int = THREAD_FILES) -> list[Read]:
        """The thread's attachments (without their bytes), oldest first."""
        async with self._engine.connect() as conn:  # every message asks: built once
            rows = (
                await conn.execute(_FOR_THREAD, {"f_thread": thread_id, "f_limit": limit})
            ).all()
        return [
            Read(r.name, r.kind, r.mime, r.size, r.text, r.error, id=r.id, kept=bool(r.kept))
            for r in reversed(rows)
        ]

    async def file(self, attachment_id: int) -> tuple[int, Read] | None:
        """One attachment with its bytes (when kept) and its thread's id: the console's view."""
        async with self._engine.connect() as conn:
            table = ThreadAttachment.__table__
            a = (await conn.execute(select(table).where(table.c.id == attachment_id))).first()
        if a is None:
            return None
        data = a.data if a.stored_key is None else await get_bytes(self.files, a.stored_key)
        read = Read(a.name, a.kind, a.mime, a.size, text=a.text, error=a.error, data=data, id=a.id)
        return int(a.thread_id), read


def _with_id(read: Read, row_id: int) -> Read:
    return Read(
        read.name, read.kind, read.mime, read.size, read.text, read.error, read.data, row_id
    )
