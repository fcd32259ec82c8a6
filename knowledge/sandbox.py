"""Run a blocking function in a warm worker process under a memory limit and a timeout.

A document parser fed a hostile file (a zip bomb, a PDF with a page tree that never ends) may
want gigabytes or minutes; in a worker process that costs a refusal, not the server. Each worker
sets `RLIMIT_AS` on itself at start (`ParseLimits.memory_mb`), so an allocation past the limit
fails there with `MemoryError`; a call that runs past `ParseLimits.timeout` gets its worker
killed, and the next call starts a fresh one. Workers fork from a forkserver that imported the
parsers once, so a new worker is ready in milliseconds and a small document costs a round trip
over a pipe, not an interpreter start.

    Sandbox.run(fn, *args)   the result, or LoadError with the reason in words

The calls wait in threads of their own (never the event loop's default pool), one per call in
flight; at most `ParseLimits.workers` run at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import multiprocessing
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from typing import Any, TypeVar

from knowledge.config import ParseLimits
from knowledge.errors import LoadError

__all__ = ["Sandbox"]

log = logging.getLogger(__name__)

T = TypeVar("T")

# Imported once by the forkserver, so every worker starts with them loaded.
PRELOAD = ["knowledge.loaders", "docx", "pypdf", "openpyxl", "trafilatura"]


def _serve(conn: Connection, memory_mb: int) -> None:
    """A worker's loop: call what arrives, send back ("ok", result) or (kind, reason)."""
    # Ctrl-C reaches the whole process group: the server decides, and ends its workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        import resource

        limit = memory_mb * 1_048_576
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError) as error:  # not Unix, or a hard limit below ours
        log.warning("parser process: no memory limit (%s)", error)
    while True:
        try:
            fn, args, kwargs = conn.recv()
        except (EOFError, OSError):
            return  # the parent went away
        except MemoryError:
            conn.send(("memory", ""))
            return
        try:
            reply: tuple[str, Any] = ("ok", fn(*args, **kwargs))
        except MemoryError:
            reply = ("memory", "")
        except LoadError as error:
            reply = ("refused", str(error))
        except Exception as error:  # reported in words to the caller; the worker stays
            reply = ("error", f"{type(error).__name__}: {error}")
        del fn, args, kwargs
        try:
            conn.send(reply)
        except MemoryError:
            conn.send(("memory", ""))
        except Exception as error:  # an unpicklable result
            conn.send(("error", f"{type(error).__name__}: {error}"))
        if reply[0] == "memory":
            return  # a process that ran out of memory is not trusted with the next file


class _Worker:
    """One worker process and the parent's end of its pipe."""

    def __init__(self, context: BaseContext, memory_mb: int) -> None:
        parent, child = multiprocessing.Pipe()
        process = context.Process(  # type: ignore[attr-defined]  # every context has Process
            target=_serve, args=(child, memory_mb), name="teambot-parser", daemon=True
        )
        process.start()
        child.close()
        self.process, self.conn = process, parent

    def call(self, job: tuple[Any, ...], timeout: float) -> tuple[str, Any]:
        """Send one job and wait for its reply; ("timeout", "") when it runs out of time,
        ("died", why) when the process ends without one."""
        try:
            self.conn.send(job)
            if not self.conn.poll(timeout):
                return "timeout", ""
            reply: tuple[str, Any] = self.conn.recv()
            return reply
        except (EOFError, OSError):
            self.process.join(1)
            return "died", f"exit code {self.process.exitcode}"

    def kill(self) -> None:
        self.process.kill()
        self.process.join(2)
        self.conn.close()


class Sandbox:
    """Worker processes under `limits`, started on first use and replaced after a failure."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limits = limits
        self._context = _context()
        self._slots = threading.BoundedSemaphore(limits.workers)
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` in a worker; `LoadError` with the reason when it fails."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        thread = threading.Thread(
            target=self._job, args=(future, (fn, args, kwargs)), name="parse-wait", daemon=True
        )
        thread.start()
        return await asyncio.wrap_future(future)

    def warm(self) -> None:
        """Start the workers now rather than at the first document (blocking)."""
        with self._lock:
            missing = self.limits.workers - len(self._all)
        for _ in range(max(missing, 0)):
            self._release(self._start())

    def close(self) -> None:
        """Stop every worker; calls in flight end with a LoadError."""
        with self._lock:
            self._closed = True
            workers, self._idle = list(self._all), []
            self._all.clear()
        for worker in workers:
            worker.kill()

    def _job(self, future: concurrent.futures.Future[Any], job: tuple[Any, ...]) -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            with self._slots:
                result = self._call(job)
        except BaseException as error:  # handed to the awaiting task
            future.set_exception(error)
        else:
            future.set_result(result)

    def _call(self, job: tuple[Any, ...]) -> Any:
        worker = self._take()
        try:
            kind, value = worker.call(job, self.limits.timeout)
        except BaseException:  # e.g. arguments that cannot be pickled: this worker is not reused
            self._retire(worker)
            raise
        if kind == "ok":
            self._release(worker)
            return value
        if kind in ("refused", "error"):
            self._release(worker)
            raise LoadError(value)
        self._retire(worker)
        if kind == "timeout":
            raise LoadError(
                f"解析超时 / parsing took longer than {self.limits.timeout:g} s "
                "(knowledge.parsing.timeout): refused; the parser was stopped"
            )
        if kind == "memory":
            raise LoadError(
                f"内存超限 / parsing needed more than {self.limits.memory_mb} MB of memory "
                "(knowledge.parsing.memory_mb): refused"
            )
        raise LoadError(
            f"解析进程异常退出 / the parser process ended without an answer ({value}), "
            f"probably past its {self.limits.memory_mb} MB memory limit: refused"
        )

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise LoadError("the document parser is shut down")
            while self._idle:
                worker = self._idle.pop()
                if worker.process.is_alive():
                    return worker
                self._all.discard(worker)
        return self._start()

    def _start(self) -> _Worker:
        worker = _Worker(self._context, self.limits.memory_mb)
        with self._lock:
            self._all.add(worker)
        return worker

    def _release(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.kill()

    def _retire(self, worker: _Worker) -> None:
        with self._lock:
            self._all.discard(worker)
        worker.kill()


def _context() -> BaseContext:
    """forkserver where there is one (workers fork from a process that preloaded the parsers),
    else spawn; never plain fork, which would copy the server's threads and memory."""
    try:
        context = multiprocessing.get_context("forkserver")
    except ValueError:
        return multiprocessing.get_context("spawn")
    context.set_forkserver_preload(PRELOAD)
    return context
