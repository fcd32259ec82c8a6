"""The built-in web chat: an HTTP + server-sent-events adapter that doubles as the test backend.

POST /api/chat (JSON, or multipart with files: adapters/web/upload.py) streams one answer (with keep-alives while the model thinks); an open page
listens on /api/threads/{chat}/{thread}/events, where an agent's reply from the console lands
(`reply_channel`), so a handoff in the web chat is a conversation, not a dead end.

Every request body is checked for size and nesting before it is parsed (adapters/web/body.py),
and every route acts only on the chats of the browser's own session (adapters/web/sessions.py):
another browser gets 403 (a chat) or 404 (an answer to rate).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.base import AdapterStatus, Check, Core
from adapters.markdown import to_html
from adapters.streaming import Coalescer
from adapters.web import body
from adapters.web.broadcast import Broadcast, LocalOnly
from adapters.web.config import WebChatSettings
from adapters.web.convert import (
    BAD_ID,
    NO_TURN,
    NOT_YOURS,
    NOTHING_ASKED,
    TOO_MANY_ESCALATIONS,
    EscalateRequest,
    FeedbackRequest,
    answer_to_json,
    chat_of,
    refused,
    thread_key,
    to_inbound,
    valid_id,
)
from adapters.web.late import answer_late, page_event
from adapters.web.sessions import Sessions
from adapters.web.upload import chat_message
from engine.catalog import both, phrase
from engine.messages import Answer, ChatType, Click, EscalationNotice, Inbound, ThreadKey
from engine.policy import Buckets
from engine.ports import ChannelLimits, ReplyChannel
from engine.threads.escalation import BUTTON

log = logging.getLogger(__name__)

STOP_GRACE = 10.0  # seconds shutdown waits for web chat answers in flight
# Seconds between streamed updates to a page: smooth to read, and the page is not sent the whole
# answer again (text and HTML) for every token the model writes.
UPDATE_INTERVAL = 0.1


class WebReplyChannel:
    """Collects what the core says as events; the HTTP handler streams them out. Updates are
    coalesced (adapters/streaming.py): at most one every `update_interval` seconds."""

    def __init__(
        self, limits: ChannelLimits | None = None, *, update_interval: float = UPDATE_INTERVAL
    ) -> None:
        self._limits = limits or ChannelLimits(max_chars=20_000, can_edit=True)
        self.events: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.updates: list[str] = []  # the texts the page was sent, in order
        self.final: Answer | None = None
        self.escalations: list[EscalationNotice] = []
        self._edits = Coalescer(self._show, update_interval)

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    async def open(self, language: str = "en") -> None:
        self.events.put_nowait({"type": "open"})

    async def update(self, text: str) -> None:
        self._edits.push(text)

    async def _show(self, text: str) -> bool:
        self.updates.append(text)
        self.events.put_nowait(
            {"type": "update", "text": text, "html": to_html(text, partial=True)}
        )
        return True

    async def finish(self, answer: Answer) -> None:
        await self._edits.close()
        self.final = answer
        self.events.put_nowait({"type": "final", "answer": answer_to_json(answer)})

    async def post_escalation(self, notice: EscalationNotice) -> None:
        # The web chat has no human channel of its own; the notice is logged for operators.
        self.escalations.append(notice)
        log.warning("escalation from the web chat: %s (%s)", notice.thread, notice.trigger)


class Pages:
    """The web threads' open pages in this process: a console reply reaches each at once, and
    through `broadcast` (adapters/web/broadcast.py) the pages other replicas hold."""

    def __init__(self, broadcast: Broadcast | None = None) -> None:
        self._listeners: dict[ThreadKey, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.broadcast: Broadcast = broadcast or LocalOnly()

    def listen(self, key: ThreadKey) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._listeners.setdefault(key, set()).add(queue)
        return queue

    def leave(self, key: ThreadKey, queue: asyncio.Queue[dict[str, Any]]) -> None:
        listeners = self._listeners.get(key, set())
        listeners.discard(queue)
        if not listeners:
            self._listeners.pop(key, None)

    def publish(self, key: ThreadKey, event: dict[str, Any]) -> int:
        """Send `event` to every open page of the thread; how many there were."""
        listeners = self._listeners.get(key, set())
        for queue in listeners:
            queue.put_nowait(event)
        return len(listeners)

    async def send(self, key: ThreadKey, event: dict[str, Any]) -> int:
        """`publish` here and on every other replica; how many open pages this one had."""
        shown = self.publish(key, event)
        try:
            await self.broadcast.send(key, event)
        except Exception:  # the reply is stored: a page elsewhere shows it on reload
            log.exception("web thread %s: the other replicas' pages were not told", key)
        return shown


class PageChannel:
    """Posts into a web thread unprompted (an agent's console reply): to its open pages."""

    def __init__(self, pages: Pages, key: ThreadKey) -> None:
        self._pages, self._key = pages, key

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits(max_chars=20_000, can_edit=False)

    async def open(self, language: str = "en") -> None: ...

    async def update(self, text: str) -> None: ...

    async def finish(self, answer: Answer) -> None:
        shown = await self._pages.send(self._key, page_event(answer))
        log.info("web thread %s: a message reached %d open page(s) here", self._key, shown)

    async def post_escalation(self, notice: EscalationNotice) -> None:
        log.warning("escalation from the web chat: %s (%s)", notice.thread, notice.trigger)


KEEP_ALIVE_SECONDS = 5.0  # well under the 30-60 s after which proxies cut a silent stream
LISTEN_SECONDS = 60.0  # a page's event stream ends after this; the browser reconnects


class WebAdapter:
    """POST /api/chat answers one message as a stream of server-sent events; every route acts
    only on the chats of the browser's own session (adapters/web/sessions.py)."""

    name = "web"

    def __init__(
        self,
        core: Core,
        settings: WebChatSettings | None = None,
        *,
        engine: Callable[[], AsyncEngine | None] = lambda: None,
        buckets: Buckets | None = None,
        broadcast: Broadcast | None = None,
    ) -> None:
        self._core = core
        self.settings = settings or WebChatSettings()
        self.sessions = Sessions(self.settings, engine, buckets)
        self._tasks: set[asyncio.Task[Answer | None]] = set()
        self.pages = Pages(broadcast)
        self._closing = asyncio.Event()

    def router(self) -> APIRouter:
        router = APIRouter()
        limits = {
            "max_bytes": self.settings.max_body_bytes,
            "max_depth": self.settings.max_json_depth,
        }

        @router.post("/api/chat")
        async def chat(request: Request) -> Response:
            """JSON, or multipart with a `message` part and `file` parts (adapters/web/upload);
            either way the message is checked for size and depth first (adapters/web/body)."""
            message = await chat_message(request, **limits)
            session = await self.sessions.identify(request)
            if not await self.sessions.claim(message.request.chat_id, session):
                await message.close()
                return refused(NOT_YOURS, 403)
            inbound = to_inbound(message.request, message.attachments)
            stream = self._stream(inbound, message.close)
            response = StreamingResponse(stream, media_type="text/event-stream")
            await self.sessions.attach(response, session, request)
            return response

        @router.post("/api/feedback")
        async def feedback(request: Request) -> Response:
            clicked = await body.read(request, FeedbackRequest, **limits)
            session = await self.sessions.identify(request)
            if not await self.sessions.owns(clicked.chat_id, session):
                return refused(NO_TURN, 404)
            try:
                chat = chat_of(clicked.chat_id)
                await self._core.clicked(
                    Click(clicked.value, clicked.chat_id, clicked.turn_id, chat=chat)
                )
            except LookupError:
                return refused(NO_TURN, 404)
            return JSONResponse({"status": "recorded"})

        @router.post("/api/escalate")
        async def escalate(request: Request) -> Response:
            """The "Talk to a person" button: the thread goes to the console's inbox."""
            asked = await body.read(request, EscalateRequest, **limits)
            return await self._escalate(request, asked)

        @router.get("/api/threads/{chat_id}/{thread_id}/events")
        async def events(request: Request, chat_id: str, thread_id: str) -> Response:
            if not (valid_id(chat_id) and valid_id(thread_id)):
                return refused(BAD_ID, 400)
            session = await self.sessions.identify(request)
            if not await self.sessions.owns(chat_id, session):
                return refused(NOT_YOURS, 403)
            key = thread_key(chat_id, thread_id)
            return StreamingResponse(self._listen(key), media_type="text/event-stream")

        return router

    async def _escalate(self, request: Request, asked: EscalateRequest) -> Response:
        session = await self.sessions.identify(request)
        if not await self.sessions.owns(asked.chat_id, session):
            return refused(NOT_YOURS, 403)
        if not await self.sessions.may_escalate(session):
            response = refused(TOO_MANY_ESCALATIONS, 429)
            response.headers["Retry-After"] = str(int(3600 / self.settings.escalations_per_hour))
            return response
        channel = WebReplyChannel()
        key = thread_key(asked.chat_id, asked.thread_id)
        try:
            await self._core.clicked(
                Click("human", asked.chat_id, thread=key, trigger=BUTTON), channel
            )
        except LookupError:  # engine.threads.lifecycle.NothingAsked: no blank escalation
            return refused(NOTHING_ASKED, 409)
        if channel.final is not None:
            return JSONResponse({"escalated": True, **answer_to_json(channel.final)})
        text = phrase("already_escalated", asked.language)
        return JSONResponse({"escalated": False, "text": text, "html": to_html(text)})

    async def start(self) -> None:
        """The web chat rides on teambot's own HTTP server; it listens for the page events of
        other replicas (adapters/web/broadcast.py)."""
        await self.pages.broadcast.start(self.pages.publish)

    async def stop(self) -> None:
        self._closing.set()  # open pages' event streams end; their browsers reconnect elsewhere
        # answers in flight get a grace period; the rest are cancelled and told (engine/ending)
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        await self.sessions.buckets.close()
        await self.pages.broadcast.stop()

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> ReplyChannel | None:
        return PageChannel(self.pages, key)

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=None, mode="http", detail="built-in web chat")

    async def check(self) -> list[Check]:
        status, detail = await self.pages.broadcast.check()
        return [Check("page events", status, detail)]

    async def _stream(
        self, inbound: Inbound, close_uploads: Callable[[], Awaitable[None]]
    ) -> AsyncIterator[str]:
        channel = WebReplyChannel()

        async def answer() -> Answer | None:
            try:
                return await self._core.handle(inbound, channel)
            finally:
                await close_uploads()  # the uploaded files: read by now, or never to be

        # The answer runs as its own task: a browser that goes away does not cancel it,
        # so the turn is still answered and stored.
        task = asyncio.create_task(answer())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        ended = False
        try:
            async with aclosing(self._events(task, channel)) as events:
                async for event in events:
                    yield _sse(event)
                    ended = event["type"] in ("final", "error", "duplicate")
        finally:
            if not ended:  # the page went away first: its answer goes to the thread's pages
                answer_late(self.pages.send, inbound.thread_key, task, channel)

    async def _events(
        self, task: asyncio.Task[Answer | None], channel: WebReplyChannel
    ) -> AsyncGenerator[dict[str, Any]]:
        while True:
            getter = asyncio.ensure_future(channel.events.get())
            done, _ = await asyncio.wait(
                {getter, task}, timeout=KEEP_ALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:  # the model is still thinking: say so, and keep proxies from cutting us
                getter.cancel()
                yield {"type": "thinking"}
                continue
            if getter in done:
                event = getter.result()
                yield event
                if event["type"] == "final":
                    await asyncio.wait({task})
                    return
                continue
            getter.cancel()
            while not channel.events.empty():
                event = channel.events.get_nowait()
                yield event
                if event["type"] == "final":
                    return
            error = task.exception()
            if error is not None:
                log.error("web chat message failed", exc_info=error)
                # never the error itself: it can carry SQL, parameters and paths
                yield {"type": "error", "message": both("web_failed")}
            elif task.result() is None:
                yield {"type": "duplicate"}
            return

    async def _listen(self, key: ThreadKey) -> AsyncIterator[str]:
        queue = self.pages.listen(key)
        loop = asyncio.get_running_loop()
        until = loop.time() + LISTEN_SECONDS
        try:
            yield "retry: 2000\n\n"
            while not self._closing.is_set() and loop.time() < until:
                try:
                    event = await asyncio.wait_for(queue.get(), KEEP_ALIVE_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                yield _sse(event)
        finally:
            self.pages.leave(key, queue)

    async def drain(self) -> None:
        """Wait for answers in flight (used at shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks))


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event, ensure_ascii=False)}\n\n"
