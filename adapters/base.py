"""What every platform adapter looks like to the service that runs it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from fastapi import APIRouter

from engine.messages import ChatType, ThreadKey
from engine.ports import Core, ReplyChannel

__all__ = ["Adapter", "AdapterStatus", "Check", "Core", "InFlight", "Leadership", "Lease"]

log = logging.getLogger(__name__)


class Adapter(Protocol):
    """One platform's intake: HTTP routes on teambot's server and/or a connection it keeps."""

    name: str

    def router(self) -> APIRouter | None:
        """Routes to mount on the HTTP server (webhooks), or None."""

    async def start(self) -> None:
        """Open connections (Socket Mode, long connection, Stream); return once running."""

    async def stop(self) -> None:
        """Stop intake, let answers in flight finish, close connections."""

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> ReplyChannel | None:
        """A channel that posts into an existing thread unprompted (console replies, apologies
        after a crash, reminders); None where the platform cannot do that. `chat_type` is the
        thread's as the store keeps it (None: unknown), for platforms whose reply differs by
        it and whose own memory a restart empties (DingTalk)."""

    def status(self) -> AdapterStatus:
        """Connection state for /readyz and `teambot doctor`."""

    async def check(self) -> list[Check]:
        """Live checks for `teambot doctor` (credentials, scopes/permissions, bot identity)."""


class Lease(Protocol):
    """Held leadership of one named connection; `lost` is set when it can no longer be trusted."""

    lost: asyncio.Event

    async def release(self) -> None: ...


class Leadership(Protocol):
    """Decides which replica holds a connection the platform allows only once per app."""

    async def acquire(self, name: str) -> Lease | None:
        """The lease when this replica is now the holder; None when another replica is."""

    async def close(self) -> None:
        """Release what the leadership itself holds (its database connections)."""


@dataclass(frozen=True, slots=True)
class AdapterStatus:
    connected: bool | None  # None: nothing to connect (webhook-only or the web chat)
    mode: str = ""  # e.g. "socket", "http", "long connection", "stream"
    last_event_age: float | None = None  # seconds since the last frame or event
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Check:
    """One line of `teambot doctor`: status is ok | warning | error."""

    name: str
    status: str
    detail: str


class InFlight:
    """The answers and clicks an adapter is working on, each its own task: a failure is logged,
    and shutdown waits for them up to a deadline, then cancels the rest."""

    def __init__(self, label: str) -> None:
        self._label = label  # "slack", "feishu", …: the start of every log line
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    async def drain(self) -> None:
        """Wait until nothing is in flight, including work started meanwhile."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def stop(self, deadline: float) -> None:
        """Wait up to `deadline` seconds, then cancel what is still running."""
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=deadline)
        if pending:
            log.warning(
                "%s: %d answers still running at shutdown; cancelled", self._label, len(pending)
            )
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s: answering failed", self._label, exc_info=task.exception())
