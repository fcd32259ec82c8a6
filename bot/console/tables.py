"""The console's tables: named agent accounts and their server-side sessions.

A session row is what makes a login revocable: logging out or changing a password deletes the
rows, and every replica reads the same rows, so a copied cookie stops working everywhere.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.store.tables import NAMING_CONVENTION
from knowledge.timestamps import UTCDateTime


class ConsoleBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class Agent(ConsoleBase):
    __tablename__ = "console_agents"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    # NFKC, case folded (accounts.name_key): "Mei" and "MEI" cannot both exist
    name_key: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))  # admin | agent
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime]
    password_changed_at: Mapped[datetime]


class ConsoleSession(ConsoleBase):
    __tablename__ = "console_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie
    agent: Mapped[str] = mapped_column(
        String(64), ForeignKey("console_agents.name", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime] = mapped_column(index=True)
    client: Mapped[str] = mapped_column(String(64))
