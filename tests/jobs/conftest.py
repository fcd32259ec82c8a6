"""The jobs tests use the engine's `store` fixture (SQLite and PostgreSQL)."""

from __future__ import annotations

from tests.engine.conftest import store

__all__ = ["store"]
