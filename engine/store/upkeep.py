"""Retention and recovery over the conversation tables: what the daily purge deletes, and the
claimed messages that never got an answer (the recovery sweeper apologises for those)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, or_, select

from engine.store.attachment_files import delete_bytes
from engine.store.database import Database
from engine.store.records import UnansweredEvent, decode_key
from engine.store.tables import (
    FaqCandidate,
    Feedback,
    Handoff,
    ProcessedEvent,
    Thread,
    ThreadAttachment,
    Turn,
)
from knowledge.files import FileStore


class Upkeep:
    """Composed into `ConversationStore` as `store.upkeep`; `jobs/retention.py` and
    `jobs/recovery.py` are its callers."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self.files: FileStore | None = None  # where attachments' bytes are, if not in their rows

    async def purge(self, before: datetime) -> dict[str, int]:
        """Delete what the retention policy no longer keeps: threads quiet since before `before`
        (with their turns, feedback, handoffs, FAQ candidates and attachments), older turns and
        attachments of threads still in use, and old dedupe rows. Returns how many rows of each went."""
        if before.tzinfo is None:
            raise ValueError("before is a naive datetime: pass an aware one (UTC)")
        async with self._db.sessions.begin() as session:
            quiet = select(Thread.id).where(Thread.last_message_at < before)
            old_turns = select(Turn.id).where(
                or_(Turn.created_at < before, Turn.thread_id.in_(quiet))
            )
            feedback = await session.execute(
                delete(Feedback).where(Feedback.turn_id.in_(old_turns))
            )
            turns = await session.execute(delete(Turn).where(Turn.id.in_(old_turns)))
            await session.execute(delete(FaqCandidate).where(FaqCandidate.thread_id.in_(quiet)))
            await session.execute(delete(Handoff).where(Handoff.thread_id.in_(quiet)))
            old = or_(ThreadAttachment.created_at < before, ThreadAttachment.thread_id.in_(quiet))
            objects = (
                await session.scalars(
                    select(ThreadAttachment.stored_key).where(
                        old, ThreadAttachment.stored_key.is_not(None)
                    )
                )
            ).all()
            attachments = await session.execute(delete(ThreadAttachment).where(old))
            threads = await session.execute(delete(Thread).where(Thread.last_message_at < before))
            events = await session.execute(
                delete(ProcessedEvent).where(ProcessedEvent.received_at < before)
            )
        await delete_bytes(self.files, [k for k in objects if k])  # after the rows are gone
        return {
            "threads": _count(threads),
            "turns": _count(turns),
            "feedback": _count(feedback),
            "events": _count(events),
            "attachments": _count(attachments),
        }

    async def unanswered_events(
        self, older_than: datetime, newer_than: datetime
    ) -> list[UnansweredEvent]:
        """Events received in [newer_than, older_than) and never answered, oldest first."""
        for name, value in (("older_than", older_than), ("newer_than", newer_than)):
            if value.tzinfo is None:
                raise ValueError(f"{name} is a naive datetime: pass an aware one (UTC)")
        stmt = (
            select(ProcessedEvent)
            .where(
                ProcessedEvent.answered_at.is_(None),
                ProcessedEvent.received_at < older_than,
                ProcessedEvent.received_at >= newer_than,
            )
            .order_by(ProcessedEvent.received_at, ProcessedEvent.id)
        )
        async with self._db.sessions() as session:
            rows = (await session.scalars(stmt)).all()
        return [
            UnansweredEvent(
                r.platform,
                r.message_id,
                decode_key(r.thread_key),
                r.received_at,
                r.question or "",
                r.asker_id or "",
            )
            for r in rows
        ]


def _count(result: Any) -> int:
    return int(getattr(result, "rowcount", 0) or 0)
