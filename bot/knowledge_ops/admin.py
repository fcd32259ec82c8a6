"""The local admin API: how the CLI changes knowledge while `teambot serve` owns the index.

On the embedded default the running server's chromadb keeps its index in memory and never sees
vectors another process writes, so there is one writer: the server. At start it takes an
exclusive lock on `<persist_dir>/server.lock` and writes `<persist_dir>/server.json` (pid, port,
a fresh random token; readable by its owner only). The CLI's knowledge commands find the lock
held, read the file and send the change to `/admin/knowledge/*` on 127.0.0.1 with the token;
the server refuses any other client address. Without a server they run in-process as before.
Scaled out (a Chroma server) there is no lock: every process writes the shared stores and the
replicas notice changes through the catalog's generation.

Answers stream as JSON lines: {"progress": [phase, done, total]}, {"notice": text},
{"report": {...}} and a last {"done": true} or {"error": text, "status": code}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from bot.knowledge_ops.changes import (
    OperatorError,
    add_source,
    ingest_directory,
    refresh_sources,
    remove_source,
)

if TYPE_CHECKING:
    from knowledge import KnowledgeBase

log = logging.getLogger(__name__)

LOCK = "server.lock"
INFO = "server.json"
PREFIX = "/admin/knowledge"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}


@dataclass(frozen=True, slots=True)
class ServerRef:
    """A running server that holds the data folder, as its file describes it."""

    pid: int
    url: str
    token: str


class Holder:
    """The server's hold on an embedded data folder (released at shutdown or process death)."""

    def __init__(self, folder: Path, handle: IO[str], token: str) -> None:
        self.folder, self._handle, self.token = folder, handle, token

    @classmethod
    def take(cls, folder: Path, port: int) -> Holder:
        """Lock the folder and publish how to reach this server; RuntimeError when another
        server holds it."""
        import fcntl

        folder = folder.expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        handle = (folder / LOCK).open("a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            handle.close()
            other = read_info(folder)
            who = f" (pid {other.pid}, {other.url})" if other else ""
            raise RuntimeError(
                f"another teambot server{who} holds the knowledge folder {folder}: stop it, or "
                "give this one its own knowledge.persist_dir"
            ) from error
        token = secrets.token_urlsafe(32)
        info = {"pid": os.getpid(), "url": f"http://127.0.0.1:{port}", "token": token}
        path = folder / INFO
        partial = folder / f".{INFO}.{os.getpid()}"
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(info, out)
        partial.replace(path)
        return cls(folder, handle, token)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            (self.folder / INFO).unlink()
        self._handle.close()  # closing the descriptor frees the lock


def read_info(folder: Path) -> ServerRef | None:
    try:
        info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        return ServerRef(int(info["pid"]), str(info["url"]), str(info["token"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def find_server(folder: Path) -> ServerRef | None:
    """The server holding `folder`, or None when no process holds it (run in-process then).

    Raises PermissionError when a server holds it but its file cannot be read (another user)."""
    import fcntl

    lock = folder / LOCK
    if not lock.exists():
        return None
    with lock.open("a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pass  # held: a server runs
        else:
            fcntl.flock(handle, fcntl.LOCK_UN)
            return None
    found = read_info(folder)
    if found is None:
        raise PermissionError(
            f"a teambot server holds {folder} but {folder / INFO} cannot be read: run this "
            "command as the user that runs the server"
        )
    return found


# -- the server side ----------------------------------------------------------------------

Work = Callable[["KnowledgeBase", "Emit"], Awaitable[None]]


def admin_router(
    knowledge: Callable[[], KnowledgeBase | None], token: Callable[[], str | None]
) -> APIRouter:
    """/admin/knowledge: ingest, refresh, add and remove sources (loopback + token only);
    `knowledge` is the running server's knowledge base (None while it starts)."""
    router = APIRouter(prefix=PREFIX)
    guard = _Guard(knowledge, token)

    @router.post("/ingest")
    async def ingest(request: Request) -> Response:
        if (no := guard.refused(request)) is not None:
            return no
        fields = await _body(request)
        path = Path(str(fields.get("path", "")))
        name, collection = fields.get("name") or None, fields.get("collection") or None
        return guard.stream(
            lambda kb, emit: ingest_directory(kb, path, name=name, collection=collection, emit=emit)
        )

    @router.post("/refresh")
    async def refresh(request: Request) -> Response:
        if (no := guard.refused(request)) is not None:
            return no
        name = (await _body(request)).get("name") or None
        return guard.stream(lambda kb, emit: refresh_sources(kb, name, emit=emit))

    @router.post("/sources")
    async def add(request: Request) -> Response:
        if (no := guard.refused(request)) is not None:
            return no
        fields = await _body(request)
        return guard.stream(lambda kb, emit: add_source(kb, fields, emit=emit))

    @router.delete("/sources/{name}")
    async def remove(request: Request, name: str) -> Response:
        if (no := guard.refused(request)) is not None:
            return no
        return guard.stream(lambda kb, emit: remove_source(kb, name, emit=emit))

    return router


class _Guard:
    """Lets in the loopback client with the token, once the server has opened its knowledge."""

    def __init__(
        self, knowledge: Callable[[], KnowledgeBase | None], token: Callable[[], str | None]
    ) -> None:
        self._knowledge, self._token = knowledge, token

    def refused(self, request: Request) -> Response | None:
        expected = self._token()
        host = request.client.host if request.client else ""
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        proxied = "x-forwarded-for" in request.headers or "forwarded" in request.headers
        if proxied or host not in LOOPBACK or not expected:  # a proxy on this host is not local
            return JSONResponse({"error": "forbidden"}, status_code=403)
        if not secrets.compare_digest(given, expected):
            return JSONResponse({"error": "forbidden"}, status_code=403)
        if self._knowledge() is None:
            return JSONResponse({"error": "teambot is still starting"}, status_code=503)
        return None

    def stream(self, work: Work) -> StreamingResponse:
        kb = self._knowledge()
        assert kb is not None  # checked by `refused`
        return _stream(lambda emit: work(kb, emit))


async def _body(request: Request) -> dict[str, Any]:
    try:
        found = await request.json()
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


Emit = Callable[[dict[str, Any]], None]


def _stream(work: Callable[[Emit], Awaitable[None]]) -> StreamingResponse:
    """Run `work` as its own task (a client that goes away does not cancel a change halfway)
    and stream what it emits as JSON lines."""
    queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def run() -> None:
        try:
            await work(queue.put_nowait)
            queue.put_nowait({"done": True})
        except Exception as error:  # reported to the CLI, which prints it
            if not isinstance(error, OperatorError):
                log.exception("admin knowledge command failed")
            status = error.status if isinstance(error, OperatorError) else 500
            queue.put_nowait({"error": str(error), "status": status})
        finally:
            queue.put_nowait(None)

    task = asyncio.create_task(run())
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)

    async def lines() -> AsyncIterator[bytes]:
        while (item := await queue.get()) is not None:
            yield (json.dumps(item, ensure_ascii=False) + "\n").encode()

    return StreamingResponse(lines(), media_type="application/x-ndjson")


_tasks: set[asyncio.Task[None]] = set()
