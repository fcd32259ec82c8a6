"""lark-oapi's long connection, run in its own thread with its own event loop.

`lark.ws.Client.start()` blocks forever on the loop it captured at import
(`lark_oapi.ws.client.loop`) and has no stop(). So: a thread makes a fresh loop, points that
module variable at it, builds the client there (its cache schedules a task on the current
loop) and runs start(). Stopping turns auto-reconnect off, closes the socket on that loop,
stops the loop and joins the thread. One long connection per process (the loop is global).

The SDK acks an event its dispatcher raises on with a 500, which the platform may redeliver:
`_Screened` stands in for the dispatcher and acks (200) what it will not handle, with the
reason logged — a payload over the limits (`adapters.payload`), an event type this bot does not
handle, or one the SDK cannot read.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection
from typing import Any

import lark_oapi as lark
from lark_oapi.core.json import JSON
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler
from lark_oapi.ws import client as ws_module
from lark_oapi.ws.model import Response

from adapters import payload
from adapters.feishu.convert import event_type

log = logging.getLogger(__name__)

_running = threading.Lock()  # the SDK's loop is a module global: one connection per process


class _WatchedClient(lark.ws.Client):  # type: ignore[misc]  # the SDK is untyped
    """The SDK client, noting when a frame (event, pong) last arrived and when it connected."""

    def __init__(self, *args: Any, on_connect: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.last_frame = time.monotonic()
        self._on_connect = on_connect

    async def _connect(self) -> None:
        await super()._connect()
        self.last_frame = time.monotonic()
        self._on_connect()

    async def _handle_message(self, msg: bytes) -> None:
        self.last_frame = time.monotonic()
        await super()._handle_message(msg)

    async def _handle_data_frame(self, frame: Any) -> None:
        """The SDK's, but a one-part payload that is not UTF-8 is acked and dropped: the SDK's
        own log line cannot decode it, so it would fail before any ack and be sent again."""
        whole = all(h.value == "1" for h in frame.headers if h.key == "sum")
        try:
            bytes(frame.payload).decode("utf-8")
        except UnicodeDecodeError as error:
            if whole:
                log.warning(
                    "feishu long connection: an event was dropped (acknowledged): %s", error
                )
                frame.payload = JSON.marshal(Response(code=200)).encode("utf-8")
                await self._write_message(frame.SerializeToString())
                return
        await super()._handle_data_frame(frame)


class _Screened:
    """What the SDK's long connection calls for each event, in place of the dispatcher: only
    events this bot handles reach it, and nothing it raises becomes a 500 ack."""

    def __init__(self, dispatcher: EventDispatcherHandler, handled: Collection[str]) -> None:
        self._dispatcher, self._handled = dispatcher, frozenset(handled)

    def _do_without_validation(self, body: bytes) -> Any:
        try:
            plain = payload.loads(body, what="event")
        except payload.PayloadError as error:
            log.warning("feishu long connection: an event was dropped (acknowledged): %s", error)
            return None
        kind = event_type(plain) if isinstance(plain, dict) else ""
        if kind not in self._handled:
            log.info("feishu long connection: event type %r is not handled; acknowledged", kind)
            return None
        try:
            return self._dispatcher._do_without_validation(body)
        except Exception as error:  # the SDK's errors for an event it cannot read vary
            log.warning(
                "feishu long connection: a %s event could not be read (%s); acknowledged",
                kind,
                error,
            )
            return None


class LongConnection:
    """Start, watch and stop one `lark.ws.Client` from the service's event loop."""

    def __init__(
        self,
        app_id: str,
        app_secret: str,
        domain: str,
        dispatcher: EventDispatcherHandler,
        handled: Collection[str],
    ) -> None:
        self._args = (app_id, app_secret)
        self._domain = domain
        self._dispatcher = _Screened(dispatcher, handled)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: _WatchedClient | None = None
        self._connected = threading.Event()
        self._error: BaseException | None = None
        self._holding = False
        self.connects = 0
        self.renewals = 0

    @property
    def connected(self) -> bool:
        client = self._client
        return client is not None and client._conn is not None

    @property
    def last_frame_age(self) -> float | None:
        client = self._client
        return None if client is None else time.monotonic() - client.last_frame

    async def start(self, wait: float) -> None:
        """Run the client in its thread; return once connected (or raise why it could not)."""
        if not _running.acquire(blocking=False):
            raise RuntimeError("a Feishu long connection already runs in this process")
        self._holding = True
        self._thread = threading.Thread(target=self._run, name="feishu-ws", daemon=True)
        self._thread.start()
        connected = await asyncio.to_thread(self._connected.wait, wait)
        if self._error is not None:
            await self.stop()
            raise RuntimeError(f"Feishu long connection failed: {self._error}") from self._error
        if not connected:
            log.warning("feishu: long connection not up after %.0f s; still trying", wait)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        imported = ws_module.loop  # the loop made at import stays referenced, and comes back
        ws_module.loop = loop  # the SDK reads this module variable in start()
        self._loop = loop
        try:
            self._client = _WatchedClient(
                *self._args,
                log_level=lark.LogLevel.WARNING,
                event_handler=self._dispatcher,
                domain=self._domain,
                auto_reconnect=True,
                on_connect=self._note_connect,
            )
            self._client.start()
        except RuntimeError as error:
            if loop.is_running() or "stopped" not in str(error):
                self._error = error
        except BaseException as error:  # credentials refused, endpoint unreachable, …
            self._error = error
            log.error("feishu: long connection ended: %s", error)
        finally:
            self._connected.set()  # wake start() when it failed before connecting
            self._close_loop(loop)
            ws_module.loop = imported

    def _note_connect(self) -> None:
        self.connects += 1
        self._connected.set()
        if self.connects > 1:
            log.info("feishu: long connection re-established (%d connects)", self.connects)

    def renew(self) -> None:
        """Drop the socket; the SDK's own reconnect brings a fresh one (the watchdog's cure)."""
        client, loop = self._client, self._loop
        if client is None or loop is None or not loop.is_running():
            return
        self.renewals += 1
        client.last_frame = time.monotonic()
        asyncio.run_coroutine_threadsafe(client._disconnect(), loop)

    async def stop(self) -> None:
        await asyncio.to_thread(self._stop_blocking)

    def _stop_blocking(self) -> None:
        client, loop, thread = self._client, self._loop, self._thread
        try:
            if client is not None:
                client._auto_reconnect = False
            if loop is not None and loop.is_running() and client is not None:
                closing = asyncio.run_coroutine_threadsafe(client._disconnect(), loop)
                try:
                    closing.result(timeout=3)
                except Exception as error:  # already closed, or the loop went first
                    log.debug("feishu: closing the long connection: %s", error)
            if loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(loop.stop)
            if thread is not None:
                thread.join(timeout=5)
                if thread.is_alive():
                    log.warning("feishu: long connection thread did not end within 5 s")
        except RuntimeError as error:  # the loop closed between the checks
            log.debug("feishu: stopping the long connection: %s", error)
        finally:
            self._client = None
            if self._holding:
                self._holding = False
                _running.release()

    @staticmethod
    def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
        loop.set_exception_handler(lambda _loop, context: log.debug("feishu ws: %s", context))
        try:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            loop.close()
