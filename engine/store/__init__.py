"""The engine's relational store (SQLAlchemy; SQLite or PostgreSQL): `Database` the engine and
its sessions, `tables` the schema, `records` what queries return, `ConversationStore`
(`conversations.py`: dedupe, threads, turns, feedback) holding `HandoffStore` (`handoffs.py`),
`AttachmentStore` (`attachments.py`) and `Upkeep` (`upkeep.py`: retention, recovery).

The names below load on first use, so importing one module of the store (the migrations read
`tables` alone) does not load the rest."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.store.conversations import ConversationStore
    from engine.store.database import Database
    from engine.store.records import Claim, ThreadRecord, TurnRecord

_HOME = {
    "ConversationStore": "engine.store.conversations",
    "Database": "engine.store.database",
    "Claim": "engine.store.records",
    "ThreadRecord": "engine.store.records",
    "TurnRecord": "engine.store.records",
}

__all__ = ["Claim", "ConversationStore", "Database", "ThreadRecord", "TurnRecord"]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine.store' has no attribute {name!r}")
    return getattr(import_module(home), name)
