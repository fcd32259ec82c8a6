"""A line typed in the terminal as the core's `Inbound` (pure)."""

from __future__ import annotations

import uuid

from engine.messages import ChatType, Inbound, Sender

PLATFORM = "cli"


def to_inbound(text: str, thread_id: str, chat_id: str = "cli") -> Inbound:
    """One question of the person at the terminal, in a direct chat's thread."""
    return Inbound(
        platform=PLATFORM,
        tenant="local",
        chat_id=chat_id,
        chat_type=ChatType.DIRECT,
        thread_id=thread_id,
        message_id=uuid.uuid4().hex,
        sender=Sender(id="cli", display_name="terminal"),
        text=text,
    )
