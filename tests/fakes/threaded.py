"""A fake server that runs on its own thread and event loop, independent of the test's loop."""

from __future__ import annotations

import asyncio
import threading
from typing import Self

from aiohttp import web


class ThreadedServer:
    """Subclasses build their aiohttp app in `_application()`; this serves it on 127.0.0.1 (an
    ephemeral port unless `port` is set) until `stop()`. `start()`/`stop()` or `with` run it."""

    label = "fake server"
    host = "127.0.0.1"
    port = 0
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

    def _application(self) -> web.Application:
        raise NotImplementedError("a ThreadedServer subclass must build its app in _application")

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        runner = web.AppRunner(
            self._application(), handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await runner.setup()
        await web.TCPSite(runner, self.host, self.port).start()
        self.port = runner.addresses[0][1]
        ready.set()
        await self._stop.wait()
        await self._closing()
        await runner.cleanup()

    async def _closing(self) -> None:
        """Runs before the server shuts down (e.g. to close open WebSockets)."""
