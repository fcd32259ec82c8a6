"""The console's knowledge-base page at /console/sources (admins): every source with its
documents, chunks, runs and errors; uploads; removing a document or a source; refresh now with
progress; a document's chunks; and "try a question" with each side's ranks and scores.

Every change goes through the same knowledge base the bot answers from, so it is live at once
here and, through the catalog's generation, on every replica within `knowledge.reload_seconds`.
"""

from __future__ import annotations

import asyncio
import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.datastructures import UploadFile
from starlette.types import ASGIApp, Receive, Scope, Send

from bot.app import App
from bot.console.accounts import SignedIn
from bot.console.deps import CSRF_WRONG, Admin, Console, ConsoleDep, Refused, Running, form
from bot.console.deps import PREFIX as CONSOLE
from bot.limits import BodyLimit
from knowledge import (
    ORIGINS,
    UPLOADS_SOURCE,
    Audience,
    KnowledgeBase,
    KnowledgeSettings,
    SourceBusyError,
    UnknownSourceError,
)
from knowledge.audience import EVERYONE, describe
from knowledge.explain import explain

if TYPE_CHECKING:
    from knowledge.uploads import UploadResult

log = logging.getLogger(__name__)

PREFIX = "/console/sources"
UPLOAD_PATH = f"{PREFIX}/upload"
UPLOAD_FILES = 5  # a request may carry this many files at the per-file limit


class UploadLimit:
    """The server's body limit, raised for the upload form (several files per request) and for
    the web chat's messages with attachments (`chat_bytes`)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, knowledge: KnowledgeSettings, chat_bytes: int = 0
    ) -> None:
        per_file = int(knowledge.upload_max_mb * 1_048_576)
        self._normal = BodyLimit(app, max_bytes)
        self._uploads = BodyLimit(app, max(max_bytes, per_file * UPLOAD_FILES + 1_048_576))
        self._chat = BodyLimit(app, max(max_bytes, chat_bytes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path") if scope["type"] == "http" else None
        if path == UPLOAD_PATH:
            await self._uploads(scope, receive, send)
        elif path == "/api/chat" and _multipart(scope):
            await self._chat(scope, receive, send)
        else:
            await self._normal(scope, receive, send)


def _multipart(scope: Scope) -> bool:
    content_type: bytes = dict(scope["headers"]).get(b"content-type", b"")
    return content_type.startswith(b"multipart/form-data")


router = APIRouter(prefix=CONSOLE)


@dataclass(frozen=True, slots=True)
class SourcesPost:
    """A form an admin sent to these pages, its CSRF token checked; files as (name, content)."""

    who: SignedIn
    fields: dict[str, Any]


async def sources_posted(request: Request, who: Admin, console: ConsoleDep) -> SourcesPost:
    """Admins only first (`Admin`, as on the Agents page), then the form and its CSRF token
    (uploads are large)."""
    fields = await _fields(request)
    if not who.csrf_ok(str(fields.get("csrf", ""))):
        raise Refused(console.forbidden(CSRF_WRONG))
    return SourcesPost(who, fields)


SourcesPosted = Annotated[SourcesPost, Depends(sources_posted)]


def _common(request: Request, who: SignedIn, console: Console) -> dict[str, Any]:
    return {**console.common(request, who, "sources"), "origins": ORIGINS}


def _back(path: str = "", notice: str = "", error: str = "") -> RedirectResponse:
    query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
    return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)


async def _overview(
    request: Request, who: SignedIn, console: Console, core: App, **extra: Any
) -> Response:
    from jobs.scheduler import next_cron, zone

    tz = zone(core.knowledge.settings.timezone)
    statuses = await core.knowledge.statuses()
    upcoming = {
        s.name: next_cron(s.schedule, tz) if s.schedule and s.configured else None for s in statuses
    }
    context = {
        **_common(request, who, console),
        "sources": statuses,
        "upcoming": upcoming,
        "runs": console.refreshes,
        "max_mb": core.knowledge.settings.upload_max_mb,
        "kinds": list(core.knowledge.kinds),
        "chat": request.query_params.get("chat", ""),
    }
    return console.render("knowledge_sources.html", **{**context, **extra})


@router.get("/sources")
async def page(request: Request, who: Admin, console: ConsoleDep, core: Running) -> Response:
    return await _overview(request, who, console, core)


@router.get("/sources/try")
async def try_question(
    request: Request, who: Admin, console: ConsoleDep, core: Running
) -> Response:
    query = request.query_params.get("q", "").strip()[:500]
    chat = request.query_params.get("chat", "").strip()[:200]
    retriever = core.knowledge.retriever
    platform, _, chat_id = chat.rpartition(":")
    collections = retriever.collections_for(platform, chat_id) if chat else None
    collections = collections or (core.knowledge.settings.default_collection,)
    explanation = await explain(retriever, query, collections) if query else None
    return await _overview(request, who, console, core, query=query, explanation=explanation)


@router.get("/sources/progress")
async def progress(who: Admin, console: ConsoleDep) -> Response:
    return JSONResponse(console.refreshes)


@router.post("/sources/upload")
async def upload(
    request: Request, post: SourcesPosted, console: ConsoleDep, core: Running
) -> Response:
    from knowledge.uploads import upload as accept

    contents = [(name, data) for name, data in post.fields.get("files", []) if name]
    if not contents:
        return _back(error="没有选择文件 / No file chosen")
    # A name with control or invisible characters is refused on its own; the others go ahead
    refused = {i: _odd_name(name) for i, (name, _) in enumerate(contents) if _odd(name)}
    kept = [file for i, file in enumerate(contents) if i not in refused]
    accepted = iter(await accept(core.knowledge, kept) if kept else [])
    results = [refused[i] if i in refused else next(accepted) for i in range(len(contents))]
    return await _overview(request, post.who, console, core, results=results)


def _odd(name: str) -> bool:
    """Control characters (NUL …), invisible format characters (zero-width, bidi controls)."""
    return any(unicodedata.category(ch) in ("Cc", "Cf") for ch in name)


def _odd_name(name: str) -> UploadResult:
    from knowledge.uploads import UploadResult

    shown = "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in name
    )
    return UploadResult(
        shown[:200],
        False,
        "文件名含有控制字符或不可见字符，请改名后再上传。 / The file name holds control or invisible "
        "characters: rename the file and upload it again.",
    )


@router.get("/sources/{name}")
async def source(
    name: str, request: Request, who: Admin, console: ConsoleDep, core: Running
) -> Response:
    documents = await core.knowledge.catalog.documents(name)
    statuses = {s.name: s for s in await core.knowledge.statuses()}
    if name not in statuses:
        return console.render(
            "error.html", status=404, message=f"没有来源 / No source named {name}"
        )
    own = _source_audience(core.knowledge, name)
    return console.render(
        "knowledge_source.html",
        **_common(request, who, console),
        source=statuses[name],
        documents=documents,
        audience=describe(own),
        audiences={d.uri: describe(own if d.audience is None else d.audience) for d in documents},
    )


def _source_audience(knowledge: KnowledgeBase, name: str) -> Audience:
    """The audience a source's documents have unless they bring their own (an orphan or an
    ad hoc ingest: everyone who sees its collection, as retrieval treats it)."""
    try:
        return knowledge.source(name).own_audience()
    except UnknownSourceError:
        return EVERYONE
    except ValueError:  # a run-time source saved before a stricter check: retrieval fails closed
        return Audience()


@router.get("/sources/{name}/chunks")
async def chunks(
    name: str, request: Request, who: Admin, console: ConsoleDep, core: Running
) -> Response:
    uri = request.query_params.get("uri", "")
    found = await core.knowledge.store.document_chunks(name, uri)
    return console.render(
        "knowledge_chunks.html",
        **_common(request, who, console),
        source_name=name,
        uri=uri,
        chunks=found,
    )


@router.post("/sources/add")
async def add(
    request: Request, post: SourcesPosted, console: ConsoleDep, core: Running
) -> Response:
    """A source of any registered kind from the form (the location may be a pasted link),
    registered now and indexed in the background with its progress on the page."""
    from bot.knowledge_ops.changes import OperatorError, checked_source, register_source

    fields = {k: str(post.fields.get(k, "")).strip() for k in ("name", "kind", "location")}
    fields["collection"] = str(post.fields.get("collection", "")).strip()
    for line in str(post.fields.get("options", "")).splitlines():
        key, equals, value = line.partition("=")
        if equals and key.strip() and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    try:
        source = await checked_source(core.knowledge, fields)
        await register_source(core.knowledge, source, emit=lambda _: None)
    except OperatorError as error:
        return await _overview(
            request, post.who, console, core, form=fields, error=str(error), status=error.status
        )
    _start_refresh(console, core, source.name)
    return _back(notice=f"已添加来源 / Added source {source.name}: indexing now")


@router.post("/sources/{name}/refresh")
async def refresh(name: str, post: SourcesPosted, console: ConsoleDep, core: Running) -> Response:
    try:
        core.knowledge.source(name)
    except UnknownSourceError:
        return _back(error=f"没有来源 / No source named {name}")
    if console.refreshes.get(name, {}).get("running"):
        return _back(notice=f"刷新进行中 / A refresh of {name} is already running")
    _start_refresh(console, core, name)
    return _back(notice=f"刷新已开始 / Refresh of {name} started")


def _start_refresh(console: Console, core: App, name: str) -> None:
    """Refresh one source in the background; the page polls its progress."""
    state: dict[str, Any] = {"running": True, "phase": "documents", "done": 0, "total": 0}
    console.refreshes[name] = state

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
    console.background.add(task)
    task.add_done_callback(console.background.discard)


@router.post("/sources/{name}/remove")
async def remove(name: str, post: SourcesPosted, console: ConsoleDep, core: Running) -> Response:
    from bot.knowledge_ops.changes import OperatorError, remove_source

    said: list[dict[str, Any]] = []
    try:
        await remove_source(core.knowledge, name, emit=said.append)
    except OperatorError as error:
        return _back(error=str(error))
    console.refreshes.pop(name, None)
    documents, chunks = next(x["removed"] for x in said if "removed" in x)
    return _back(
        notice=f"已删除来源 / Removed source {name}: {documents} documents, {chunks} chunks"
    )


@router.post("/sources/{name}/documents/delete")
async def delete_document(name: str, post: SourcesPosted, core: Running) -> Response:
    uri = str(post.fields.get("uri", ""))
    try:
        removed = await core.knowledge.ingestor.delete_document(uri, source=name)
    except SourceBusyError as error:
        return _back(f"/{quote(name)}", error=str(error))
    if not removed:
        return _back(f"/{quote(name)}", error=f"没有文档 / No document {uri}")
    if name == UPLOADS_SOURCE:
        from knowledge.uploads import forget_file

        await forget_file(core.knowledge, uri)
        later = ""
    else:
        later = " · 文件仍在来源中，下次刷新会回来 / still in the source: back at its next refresh"
    return _back(
        f"/{quote(name)}",
        notice=f"已删除文档 / Deleted {uri}: {removed} chunks{later}",
    )


async def _fields(request: Request) -> dict[str, Any]:
    """Form fields (files as lists of (file name, content) under their field name)."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        found: dict[str, Any] = {}
        async with request.form(max_files=UPLOAD_FILES * 4) as multipart:
            for key, value in multipart.multi_items():
                if isinstance(value, UploadFile):
                    found.setdefault(key, []).append((value.filename or "", await value.read()))
                else:
                    found[key] = value
        return found
    return dict(await form(request))
