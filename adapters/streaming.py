"""What every streaming reply channel shares: coalesced updates, the reply's timings, and a
bounded memory of recent items.

The core calls `ReplyChannel.update` with the whole text so far as fast as the model writes
(it does not throttle). A platform allows an edit every second or so, and an edit can be slow or
rate limited: `Coalescer` keeps only the latest text and sends it when the interval allows, from
its own task, so the model stream never waits for the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
Send = Callable[[str], Awaitable[bool]]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass
class ReplyTimings:
    """Monotonic clock readings of one reply, for the latency benchmarks."""

    created: float = field(default_factory=time.monotonic)
    placeholder: float | None = None  # the placeholder (message, card, notice) was visible
    first_text: float | None = None  # the first answer text was visible
    edits: int = 0  # streamed edits that reached the platform

    @property
    def first_visible(self) -> float | None:
        """When the asker first saw anything of the reply."""
        seen = [t for t in (self.placeholder, self.first_text) if t is not None]
        return min(seen) if seen else None

    def placeholder_shown(self, now: float | None = None) -> None:
        if self.placeholder is None:
            self.placeholder = time.monotonic() if now is None else now

    def text_shown(self, now: float | None = None) -> None:
        if self.first_text is None:
            self.first_text = time.monotonic() if now is None else now


class Coalescer:
    """Streamed text to a platform that edits slowly: the latest text wins and goes out when
    `interval` seconds have passed since the last edit, one edit at a time, in order.

    `send(text)` shows one text and returns True, or False when the platform refused it: then
    nothing more is sent (the final answer takes another way). `push` never waits."""

    def __init__(
        self,
        send: Send,
        interval: float,
        *,
        timings: ReplyTimings | None = None,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._send = send
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self.timings = timings or ReplyTimings()
        self._pending: str | None = None
        self._shown = ""
        self._last: float | None = None  # when the last edit ended; None: the first goes at once
        self._sending = False
        self._closed = False
        self.broken = False
        self._task: asyncio.Task[None] | None = None

    def push(self, text: str) -> None:
        """Show `text` (the whole text so far) when the interval allows; a newer one replaces
        one not yet sent."""
        if self._closed or self.broken or not text.strip():
            return
        self._pending = text
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Drop the text not yet sent; an edit already on the wire lands first (the final
        message must come after it)."""
        self._closed, self._pending = True, None
        task, self._task = self._task, None
        if task is None or task.done():
            return
        if self._sending:
            await asyncio.wait({task})
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def _run(self) -> None:
        while self._pending is not None and not self.broken:
            wait = 0.0 if self._last is None else self._last + self._interval - self._clock()
            if wait > 0:
                await self._sleep(wait)
                continue
            text, self._pending = self._pending, None
            if text == self._shown:
                continue
            self._sending = True
            try:
                shown = await self._send(text)
            except Exception:  # the platform's own errors are the sender's to handle
                log.exception("a streamed edit failed; the final answer follows as it can")
                shown = False
            finally:
                self._sending = False
                self._last = self._clock()
            if not shown:
                self.broken = True
                return
            self._shown = text
            self.timings.edits += 1
            self.timings.text_shown(self._last)


class Recent(Generic[K, V]):
    """The latest `capacity` items by key; the least recently put goes first. Safe to call from
    another thread (Feishu's long connection calls in from its own)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        return self._items.get(key)

    def put(self, key: K, value: V) -> None:
        """Keep `value` under `key` as the newest item."""
        with self._lock:
            self._items.pop(key, None)
            self._keep(key, value)

    def add(self, key: K, value: V) -> bool:
        """Keep `value` under `key` unless the key is there already; True when it was new."""
        with self._lock:
            if key in self._items:
                return False
            self._keep(key, value)
            return True

    def _keep(self, key: K, value: V) -> None:
        self._items[key] = value
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)
