"""The conversation core: decide, remember, retrieve, ask the model, answer, hand off.

`METADATA` is the core's tables (engine/store/tables.py), for the migrations (bot/migrations).
"""

from __future__ import annotations

from engine.store.tables import EngineBase

METADATA = EngineBase.metadata

__all__ = ["METADATA"]
