"""The console's knowledge-base page at /console/sources (admins): every source with its
documents, chunks, runs and errors; uploads; removing a document or a source; refresh now with
progress; a document's chunks; and "try a question" with each side's ranks and scores.

Every change goes through the same knowledge base the bot answers from, so it is live at once
here and, through the catalog's generation, on every replica within `knowledge.reload_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.console.accounts import SignedIn
from bot.limits import BodyLimit
from knowledge import (
    ORIGINS,
    UPLOADS_SOURCE,
    KnowledgeSettings,
    SourceBusyError,
    UnknownSourceError,
)
from knowledge.explain import explain

if TYPE_CHECKING:
    from bot.app import App
    from bot.console.routes import Console

log = logging.getLogger(__name__)

PREFIX = "/console/sources"
UPLOAD_PATH = f"{PREFIX}/upload"
UPLOAD_FILES = 5  # a request may carry this many files at the per-file limit


class UploadLimit:
    """The server's body limit, raised for the upload form alone (several files per request)."""

    def __init__(self, app: ASGIApp, max_bytes: int, knowledge: KnowledgeSettings) -> None:
        per_file = int(knowledge.upload_max_mb * 1_048_576)
        self._normal = BodyLimit(app, max_bytes)
        self._uploads = BodyLimit(app, max(max_bytes, per_file * UPLOAD_FILES + 1_048_576))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        upload = scope["type"] == "http" and scope.get("path") == UPLOAD_PATH
        await (self._uploads if upload else self._normal)(scope, receive, send)


def sources_routes(router: APIRouter, console: Console) -> None:
    """The /console/sources routes, on the console's router (admins only)."""
    runs: dict[str, dict[str, Any]] = {}  # source -> refresh progress, for the page's poller
    background = console.background
    render = console.render

    def guarded(
        handler: Callable[[Request, SignedIn, dict[str, Any]], Awaitable[Response]], *, post: bool
    ) -> Callable[[Request], Awaitable[Response]]:
        async def run(request: Request) -> Response:
            who = await console._who(request)
            if isinstance(who, Response):
                return who
            if not who.admin:
                return render("error.html", status=403, message="仅限管理员 / Admins only")
            fields: dict[str, Any] = {}
            if post:
                fields = await _fields(request)
                if not who.csrf_ok(str(fields.get("csrf", ""))):
                    return render("error.html", status=403, message="CSRF token missing or wrong")
            request.state.core = console.running()
            return await handler(request, who, fields)

        return run

    def common(request: Request, who: SignedIn) -> dict[str, Any]:
        return {**console.common(request, who, "sources"), "origins": ORIGINS}

    def back(path: str = "", notice: str = "", error: str = "") -> RedirectResponse:
        query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
        return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)

    async def overview(request: Request, who: SignedIn, **extra: Any) -> Response:
        core: App = request.state.core
        from jobs.scheduler import next_cron, zone

        tz = zone(core.knowledge.settings.timezone)
        statuses = await core.knowledge.statuses()
        upcoming = {
            s.name: next_cron(s.schedule, tz) if s.schedule and s.configured else None
            for s in statuses
        }
        chats = request.query_params.get("chat", "")
        return render(
            "knowledge_sources.html",
            **common(request, who),
            sources=statuses,
            upcoming=upcoming,
            runs=runs,
            max_mb=core.knowledge.settings.upload_max_mb,
            chat=chats,
            **extra,
        )

    async def page(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        return await overview(request, who)

    async def try_question(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        query = request.query_params.get("q", "").strip()[:500]
        chat = request.query_params.get("chat", "").strip()[:200]
        retriever = core.knowledge.retriever
        platform, _, chat_id = chat.rpartition(":")
        collections = retriever.collections_for(platform, chat_id) if chat else None
        collections = collections or (core.knowledge.settings.default_collection,)
        explanation = await explain(retriever, query, collections) if query else None
        return await overview(request, who, query=query, explanation=explanation)

    async def upload(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        from knowledge.uploads import upload as accept

        core: App = request.state.core
        contents = [(name, data) for name, data in fields.get("files", []) if name]
        if not contents:
            return back(error="没有选择文件 / No file chosen")
        results = await accept(core.knowledge, contents)
        return await overview(request, who, results=results)

    async def refresh(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        name = request.path_params["name"]
        try:
            core.knowledge.source(name)
        except UnknownSourceError:
            return back(error=f"没有来源 / No source named {name}")
        if runs.get(name, {}).get("running"):
            return back(notice=f"刷新进行中 / A refresh of {name} is already running")
        state: dict[str, Any] = {"running": True, "phase": "documents", "done": 0, "total": 0}
        runs[name] = state

        def progress(phase: str, done: int, total: int) -> None:
            state.update(phase=phase, done=done, total=total)

        async def run() -> None:
            try:
                report = await core.knowledge.refresh(name, progress)
                state.update(result=report.result, summary=report.summary())
            except Exception as error:  # shown on the page, never raised into the loop
                log.exception("console refresh of %s failed", name)
                state.update(result="failed", summary=str(error))
            finally:
                state["running"] = False
                state["finished"] = datetime.now().isoformat(timespec="seconds")

        task = asyncio.create_task(run())
        background.add(task)
        task.add_done_callback(background.discard)
        return back(notice=f"刷新已开始 / Refresh of {name} started")

    async def progress(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        return JSONResponse(runs)

    async def remove(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        name = request.path_params["name"]
        from bot.knowledge_ops import OperatorError, remove_source

        said: list[dict[str, Any]] = []
        try:
            await remove_source(core.knowledge, name, emit=said.append)
        except OperatorError as error:
            return back(error=str(error))
        runs.pop(name, None)
        documents, chunks = next(x["removed"] for x in said if "removed" in x)
        return back(
            notice=f"已删除来源 / Removed source {name}: {documents} documents, {chunks} chunks"
        )

    async def source(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        name = request.path_params["name"]
        documents = await core.knowledge.catalog.documents(name)
        statuses = {s.name: s for s in await core.knowledge.statuses()}
        if name not in statuses:
            return render("error.html", status=404, message=f"没有来源 / No source named {name}")
        return render(
            "knowledge_source.html",
            **common(request, who),
            source=statuses[name],
            documents=documents,
        )

    async def chunks(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        name = request.path_params["name"]
        uri = request.query_params.get("uri", "")
        found = await core.knowledge.store.document_chunks(name, uri)
        return render(
            "knowledge_chunks.html", **common(request, who), source_name=name, uri=uri, chunks=found
        )

    async def delete_document(request: Request, who: SignedIn, fields: dict[str, Any]) -> Response:
        core: App = request.state.core
        name = request.path_params["name"]
        uri = str(fields.get("uri", ""))
        try:
            removed = await core.knowledge.ingestor.delete_document(uri, source=name)
        except SourceBusyError as error:
            return back(f"/{quote(name)}", error=str(error))
        if not removed:
            return back(f"/{quote(name)}", error=f"没有文档 / No document {uri}")
        if name == UPLOADS_SOURCE:
            from knowledge.uploads import forget_file

            await forget_file(core.knowledge, uri)
            later = ""
        else:
            later = (
                " · 文件仍在来源中，下次刷新会回来 / still in the source: back at its next refresh"
            )
        return back(
            f"/{quote(name)}",
            notice=f"已删除文档 / Deleted {uri}: {removed} chunks{later}",
        )

    router.add_api_route("/sources", guarded(page, post=False), methods=["GET"])
    router.add_api_route("/sources/try", guarded(try_question, post=False), methods=["GET"])
    router.add_api_route("/sources/progress", guarded(progress, post=False), methods=["GET"])
    router.add_api_route("/sources/upload", guarded(upload, post=True), methods=["POST"])
    router.add_api_route("/sources/{name}", guarded(source, post=False), methods=["GET"])
    router.add_api_route("/sources/{name}/chunks", guarded(chunks, post=False), methods=["GET"])
    router.add_api_route("/sources/{name}/refresh", guarded(refresh, post=True), methods=["POST"])
    router.add_api_route("/sources/{name}/remove", guarded(remove, post=True), methods=["POST"])
    router.add_api_route(
        "/sources/{name}/documents/delete", guarded(delete_document, post=True), methods=["POST"]
    )


async def _fields(request: Request) -> dict[str, Any]:
    """Form fields (files as lists of (file name, content) under their field name)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        found: dict[str, Any] = {}
        async with request.form(max_files=UPLOAD_FILES * 4) as form:
            for key, value in form.multi_items():
                if isinstance(value, UploadFile):
                    found.setdefault(key, []).append((value.filename or "", await value.read()))
                else:
                    found[key] = value
        return found
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}
