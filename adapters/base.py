"""What every platform adapter looks like to the service that runs it."""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter

from engine.messages import Answer, Inbound
from engine.ports import ReplyChannel


class Core(Protocol):
    """The part of engine.Conversation an adapter calls."""

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None: ...

    async def feedback(self, turn_id: int, user_id: str, value: str, comment: str = "") -> None: ...


class Adapter(Protocol):
    """One platform's intake: HTTP routes on teambot's server and/or a connection it keeps."""

    name: str

    def router(self) -> APIRouter | None:
        """Routes to mount on the HTTP server (webhooks), or None."""

    async def start(self) -> None:
        """Open connections (Socket Mode, long connection, Stream); return once running."""

    async def stop(self) -> None:
        """Stop intake, let answers in flight finish, close connections."""
