"""The web chat's tables: which browser session owns each chat, and the key that signs sessions.

Both live in the shared database, so every replica agrees on the owner of a chat and on the key
(when no `TEAMBOT_WEBCHAT__SESSION_SECRET` is set), across restarts too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from engine.store.tables import NAMING_CONVENTION
from knowledge.timestamps import UTCDateTime

# Chats of the web chat that existed before sessions did are owned by this: no session's hash
LEGACY_OWNER = "-"


class WebChatBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


class ChatOwner(WebChatBase):
    __tablename__ = "web_chat_owners"

    chat_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    session_hash: Mapped[str] = mapped_column(String(64), index=True)  # sha256 of the session id
    created_at: Mapped[datetime]


class SigningKey(WebChatBase):
    __tablename__ = "web_chat_keys"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
