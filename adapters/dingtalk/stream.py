"""The Stream connection: the SDK's client with a connect loop that can be stopped and watched.

dingtalk-stream 0.24.3's `start()` swallows CancelledError and reconnects forever with fixed
sleeps, so it cannot be stopped. `StreamConnection.run()` replaces only that loop and reuses the
SDK's pieces: `open_connection()` (blocking `requests`, run in a thread), `route_message()`
(handler dispatch and the ack), the handler registry and `pre_start()`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any
from urllib.parse import quote_plus

import requests as _requests
import websockets
from dingtalk_stream import AckMessage, Credential, DingTalkStreamClient
from dingtalk_stream import card_replier as _sdk_card_replier
from dingtalk_stream import chatbot as _sdk_chatbot
from dingtalk_stream import stream as _sdk_stream
from dingtalk_stream import utils as _sdk_utils

from adapters import payload

log = logging.getLogger(__name__)


class _TimedRequests:
    """`requests` as the SDK's stream module sees it, with a timeout on every call: the SDK
    opens the connection (and `check()` with it) with no timeout, so a gateway that accepts
    and never answers would hold the reconnect loop forever."""

    timeout = 10.0

    def __getattr__(self, name: str) -> Any:
        return getattr(_requests, name)

    def post(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return _requests.post(*args, **kwargs)

    def get(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", self.timeout)
        return _requests.get(*args, **kwargs)


_sdk_stream.requests = _TimedRequests()

OPEN_CONNECTION_PATH = "/v1.0/gateway/connections/open"


def point_sdk_at(endpoint: str) -> None:
    """Make every SDK call use `endpoint` instead of the origin it copied at import.

    DINGTALK_OPENAPI_ENDPOINT is read once when the SDK is imported and copied into these
    modules and into DingTalkStreamClient.OPEN_CONNECTION_API, which `open_connection()` reads
    from the class (not the instance), so a subclass attribute would not be seen. One DingTalk
    app per process is the deployment unit, so setting them process-wide is safe.
    """
    for module in (_sdk_utils, _sdk_stream, _sdk_chatbot, _sdk_card_replier):
        module.DINGTALK_OPENAPI_ENDPOINT = endpoint
    DingTalkStreamClient.OPEN_CONNECTION_API = endpoint + OPEN_CONNECTION_PATH


class _QuietPings(logging.Filter):
    """The SDK warns "unknown message topic" for every gateway ping it (correctly) answers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "topic=ping" not in record.getMessage()


class StreamConnection(DingTalkStreamClient):  # type: ignore[misc]  # the SDK is untyped
    """One Stream connection with a stop flag, a last-frame watchdog and backoff."""

    def __init__(
        self,
        credential: Credential,
        *,
        endpoint: str,
        watchdog_idle: float,
        backoff_initial: float,
        backoff_max: float,
        open_timeout: float = 10.0,
    ) -> None:
        sdk_log = logging.getLogger("adapters.dingtalk.sdk")
        sdk_log.addFilter(_QuietPings())
        super().__init__(credential, logger=sdk_log)
        self.endpoint = endpoint
        self.watchdog_idle = watchdog_idle
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.open_timeout = open_timeout
        self.connected = False
        self.last_frame: float | None = None  # monotonic time of the last frame received
        self.connects = 0
        self.last_error = ""
        self._stopping = False
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()  # set while connected
        self._frames: set[asyncio.Task[None]] = set()
        point_sdk_at(endpoint)

    @property
    def last_frame_age(self) -> float | None:
        return None if self.last_frame is None else time.monotonic() - self.last_frame

    async def run(self) -> None:
        """Connect, read frames, reconnect with backoff until `stop()`."""
        self.pre_start()
        delay = self.backoff_initial
        while not self._stopping:
            try:
                delay = await self._connect_once(delay)
            except Exception as error:  # whatever it was, the loop goes on: reconnect later
                self.last_error = f"{type(error).__name__}: {error}"
                log.exception("DingTalk Stream: connection failed (%s)", self.last_error)
            if self._stopping:
                break
            await self._sleep(delay)
            delay = min(delay * 2, self.backoff_max)

    async def _connect_once(self, delay: float) -> float:
        """Open one connection and read it until it ends; returns the backoff to use next."""
        point_sdk_at(self.endpoint)
        connection = await self.open()
        if self._stopping:
            return delay
        if not connection or "endpoint" not in connection:
            self.last_error = f"open connection failed at {self.OPEN_CONNECTION_API}"
            log.warning("DingTalk Stream: %s; retrying in %.1f s", self.last_error, delay)
            return delay
        return await self._read(connection, delay)

    async def _read(self, connection: dict[str, Any], delay: float) -> float:
        """Read one connection until it ends; returns the backoff to use next."""
        uri = f"{connection['endpoint']}?ticket={quote_plus(str(connection['ticket']))}"
        watchdog: asyncio.Task[None] | None = None
        try:
            async with websockets.connect(uri, close_timeout=2, max_size=None) as websocket:
                self.websocket = websocket
                self.connected, self.connects = True, self.connects + 1
                self.last_frame = time.monotonic()
                self.last_error = ""
                delay = self.backoff_initial  # it worked: the next reconnect starts quick again
                self.ready.set()
                log.info("DingTalk Stream connected (%s)", connection["endpoint"])
                watchdog = asyncio.create_task(self._watch(websocket))
                async for raw in websocket:
                    self.last_frame = time.monotonic()
                    await self._frame(raw)
        except (OSError, websockets.exceptions.WebSocketException, ValueError) as error:
            self.last_error = f"{type(error).__name__}: {error}"
            log.warning("DingTalk Stream connection lost: %s", self.last_error)
        except Exception as error:  # a bug of ours or the SDK's: logged whole, then reconnect
            self.last_error = f"{type(error).__name__}: {error}"
            log.exception("DingTalk Stream connection ended by an error: %s", self.last_error)
        finally:
            self.connected = False
            self.ready.clear()
            if watchdog is not None:
                watchdog.cancel()
        return delay

    async def _frame(self, raw: str | bytes) -> None:
        """One frame off the socket, read within limits (`adapters.payload`): one that is
        garbled, too large or nested too deep is logged and skipped (acked when it has an id),
        never fatal to the connection."""
        try:
            frame = payload.loads(raw, what="frame")
        except payload.PayloadError as error:
            log.warning("DingTalk Stream: a frame was skipped: %s", error)
            return
        if not isinstance(frame, dict):
            log.warning("DingTalk Stream: a frame was skipped: a JSON %s", type(frame).__name__)
            return
        data = frame.get("data")
        if isinstance(data, str) and data:
            try:
                payload.loads(data, what="frame data")
            except payload.PayloadError as error:
                log.warning("DingTalk Stream: a frame was acknowledged and dropped: %s", error)
                await self._ack_dropped(frame, str(error))
                return
        self._spawn(frame)

    async def _ack_dropped(self, frame: dict[str, Any], why: str) -> None:
        """Ack a frame that will not be handled, so the gateway does not send it again."""
        headers = frame.get("headers")
        message_id = headers.get("messageId") if isinstance(headers, dict) else None
        if not isinstance(message_id, str) or self.websocket is None:
            return
        ack = AckMessage()
        ack.headers.message_id = message_id
        ack.headers.content_type = "application/json"
        ack.message = f"dropped: {why}"[:200]
        ack.data = {"response": None}
        await self.websocket.send(json.dumps(ack.to_dict()))

    async def open(self) -> dict[str, Any] | None:
        """The SDK's `open_connection` in a thread, bounded even if the thread itself hangs."""
        _TimedRequests.timeout = self.open_timeout
        try:
            return await asyncio.wait_for(
                asyncio.to_thread(self.open_connection), self.open_timeout + 5
            )
        except TimeoutError:
            return None

    def _spawn(self, frame: dict[str, Any]) -> None:
        # route_message runs the handler and sends the ack; ours return at once.
        task = asyncio.create_task(self.background_task(frame))
        self._frames.add(task)
        task.add_done_callback(self._frames.discard)

    async def _watch(self, websocket: Any) -> None:
        """Close a connection that has gone quiet: no frame (not just TCP) for watchdog_idle."""
        step = min(self.watchdog_idle / 4, 5.0)
        while True:
            await asyncio.sleep(step)
            age = self.last_frame_age
            if age is not None and age > self.watchdog_idle:
                self.last_error = f"no frame for {age:.1f} s: reconnecting"
                log.warning("DingTalk Stream %s", self.last_error)
                await websocket.close()
                return

    async def _sleep(self, seconds: float) -> None:
        """A backoff pause that `stop()` cuts short."""
        try:
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)
        except TimeoutError:
            pass

    def resume(self) -> None:
        """Make a stopped connection runnable again (leadership came back to this replica)."""
        self._stopping = False
        self._wake.clear()

    async def stop(self) -> None:
        """Stop reconnecting and close the connection; acks in flight are sent first."""
        self._stopping = True
        self._wake.set()
        if self._frames:
            await asyncio.wait(set(self._frames), timeout=2)
        websocket = self.websocket
        if websocket is not None:
            await websocket.close()
