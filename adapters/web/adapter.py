"""The built-in web chat: an HTTP + server-sent-events adapter that doubles as the test backend."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from adapters.base import AdapterStatus, Check, Core
from adapters.web.convert import ChatRequest, answer_to_json, to_inbound
from engine.messages import Answer, EscalationNotice, ThreadKey
from engine.ports import ChannelLimits, ReplyChannel

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds shutdown waits for web chat answers in flight


class FeedbackRequest(BaseModel):
    turn_id: int
    chat_id: str = Field(min_length=1, max_length=100)
    value: str = Field(pattern=r"^(up|down)$")


class WebReplyChannel:
    """Collects what the core says as events; the HTTP handler streams them out."""

    def __init__(self, limits: ChannelLimits | None = None) -> None:
        self._limits = limits or ChannelLimits(max_chars=20_000, can_edit=True)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.updates: list[str] = []
        self.final: Answer | None = None
        self.escalations: list[EscalationNotice] = []

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    async def open(self) -> None:
        self.events.put_nowait({"type": "open"})

    async def update(self, text: str) -> None:
        self.updates.append(text)
        self.events.put_nowait({"type": "update", "text": text})

    async def finish(self, answer: Answer) -> None:
        self.final = answer
        self.events.put_nowait({"type": "final", "answer": answer_to_json(answer)})

    async def post_escalation(self, notice: EscalationNotice) -> None:
        # The web chat has no human channel of its own; the notice is logged for operators.
        self.escalations.append(notice)
        log.warning("escalation from the web chat: %s (%s)", notice.thread, notice.trigger)


class WebAdapter:
    """POST /api/chat answers one message as a stream of server-sent events."""

    name = "web"

    def __init__(self, core: Core) -> None:
        self._core = core
        self._tasks: set[asyncio.Task[Answer | None]] = set()

    def router(self) -> APIRouter:
        router = APIRouter()

        @router.post("/api/chat")
        async def chat(request: ChatRequest) -> StreamingResponse:
            return StreamingResponse(self._stream(request), media_type="text/event-stream")

        @router.post("/api/feedback")
        async def feedback(request: FeedbackRequest) -> dict[str, str]:
            await self._core.feedback(request.turn_id, request.chat_id, request.value)
            return {"status": "recorded"}

        return router

    async def start(self) -> None:
        """Nothing to connect: the web chat rides on teambot's own HTTP server."""

    async def stop(self) -> None:
        # answers in flight get a grace period; the rest are cancelled and told (engine/ending)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def reply_channel(self, key: ThreadKey) -> ReplyChannel | None:
        return None  # the browser that asked is gone; the web chat cannot push

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=None, mode="http", detail="built-in web chat")

    async def check(self) -> list[Check]:
        return []

    async def _stream(self, request: ChatRequest) -> AsyncIterator[str]:
        channel = WebReplyChannel()
        # The answer runs as its own task: a browser that goes away does not cancel it,
        # so the turn is still answered and stored.
        task = asyncio.create_task(self._core.handle(to_inbound(request), channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        while True:
            getter = asyncio.ensure_future(channel.events.get())
            done, _ = await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                event = getter.result()
                yield _sse(event)
                if event["type"] == "final":
                    await asyncio.wait({task})
                    return
                continue
            getter.cancel()
            while not channel.events.empty():
                event = channel.events.get_nowait()
                yield _sse(event)
                if event["type"] == "final":
                    return
            error = task.exception()
            if error is not None:
                log.error("web chat message failed", exc_info=error)
                # never the error itself: it can carry SQL, parameters and paths
                yield _sse(
                    {
                        "type": "error",
                        "message": "出错了，请再问一次。/ Something went wrong; please ask again.",
                    }
                )
            elif task.result() is None:
                yield _sse({"type": "duplicate"})
            return

    async def drain(self) -> None:
        """Wait for answers in flight (used at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
