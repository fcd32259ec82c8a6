"""The engine's relational store (SQLAlchemy; SQLite or PostgreSQL): `Database` the engine and
its sessions, `tables` the schema, `records` what queries return, `ConversationStore`
(`conversations.py`: dedupe, threads, turns, feedback) holding `HandoffStore` (`handoffs.py`),
`AttachmentStore` (`attachments.py`) and `Upkeep` (`upkeep.py`: retention, recovery)."""

from __future__ import annotations

from engine.store.conversations import ConversationStore
from engine.store.database import Database
from engine.store.records import Claim, ThreadRecord, TurnRecord

__all__ = ["Claim", "ConversationStore", "Database", "ThreadRecord", "TurnRecord"]
