"""A fake server that runs on its own thread and event loop, independent of the test's loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Self


class ThreadedServer:
    """Subclasses implement `_serve(ready)`: set `self._stop = asyncio.Event()`, start listening,
    `ready.set()`, then wait for `self._stop`. `start()`/`stop()` or `with` run it."""

    label = "fake server"
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _error: BaseException | None = None

    def start(self) -> Self:
        ready = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(ready,), daemon=True, name=self.label
        )
        self._thread.start()
        if not ready.wait(10) or self._error is not None:
            raise RuntimeError(f"{self.label} did not start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
            self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        except BaseException as exc:
            self._error = exc
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        raise NotImplementedError("a ThreadedServer subclass must implement _serve")
