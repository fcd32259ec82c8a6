"""Knowledge changes an operator asks for (ingest, refresh, add, remove), written once and run
either inside `teambot serve` (through the admin API) or in the CLI's own process.

Each operation reports through `emit`: {"progress": [phase, done, total]}, {"notice": text},
{"report": {...}} and {"removed": [documents, chunks]}; errors an operator can fix are raised
as `OperatorError` with the fix in the message.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from knowledge import (
    UPLOADS_SOURCE,
    KnowledgeBase,
    RefreshReport,
    SourceBusyError,
    SourceConflictError,
    SourceSettings,
    UnknownSourceError,
)

Emit = Callable[[dict[str, Any]], None]


class OperatorError(Exception):
    """A change that cannot be made as asked; the message says why and what to do."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def source_name(folder: Path) -> str:
    """A valid source name from a folder name ("My Docs" -> "My-Docs")."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.name).strip("-._")[:63]
    return name or "docs"


def _stepped_aside(removed: tuple[int, int] | None, emit: Emit) -> None:
    if removed is not None:
        emit(
            {
                "notice": "示例手册已让位 / the bundled sample handbook stepped aside: removed "
                f"{removed[0]} documents, {removed[1]} chunks"
            }
        )


def report_json(report: RefreshReport) -> dict[str, Any]:
    """A refresh report as the JSON the admin API streams and the CLI prints."""
    found = asdict(report)
    found["result"] = report.result
    found["summary"] = report.summary()
    return found


async def _refresh(kb: KnowledgeBase, name: str, emit: Emit) -> None:
    def progress(phase: str, done: int, total: int) -> None:
        emit({"progress": [phase, done, total], "source": name})

    report = await kb.refresh(name, progress, wait=True)
    emit({"report": report_json(report)})


async def _register(kb: KnowledgeBase, source: SourceSettings, emit: Emit) -> None:
    try:
        removed = await kb.add_source(source)
    except SourceConflictError as error:
        raise OperatorError(str(error), 409) from error
    schedule = f"schedule {source.schedule!r}"
    emit(
        {
            "notice": f"已登记来源 / registered source {source.name} ({source.kind} "
            f"{source.location}, collection {source.collection}, {schedule})"
        }
    )
    _stepped_aside(removed, emit)


async def ingest_directory(
    kb: KnowledgeBase, path: Path, *, name: str | None, collection: str | None, emit: Emit
) -> None:
    """Register a folder (or file) as a directory source and index it now."""
    root = await asyncio.to_thread(lambda: path.expanduser().resolve())
    if not await asyncio.to_thread(root.exists):
        raise OperatorError(f"{root} does not exist", 404)
    name = name or source_name(root)
    configured = {s.name: s for s in kb.settings.sources}
    if name in configured:  # `teambot ingest` of a configured folder: just refresh it
        where = await asyncio.to_thread(_resolve, configured[name].location)
        if where != root:
            raise OperatorError(
                f"knowledge source {name!r} is defined in teambot.toml with another location; "
                "pick another name with --name",
                409,
            )
    else:
        existing = next((s for s in kb.sources if s.name == name), None)
        values: dict[str, Any] = {
            "name": name,
            "kind": "directory",
            "location": str(root),
            "collection": collection
            or (existing.collection if existing else kb.settings.default_collection),
        }
        if existing is not None:
            values["schedule"] = existing.schedule
        spec = SourceSettings.model_validate(values)
        await _register(kb, spec, emit)
    await _refresh(kb, name, emit)


async def refresh_sources(kb: KnowledgeBase, name: str | None, *, emit: Emit) -> None:
    """Refresh one source (or every source) now."""
    await kb.reload()
    names = [name] if name else [s.name for s in kb.sources]
    if not names:
        raise OperatorError(
            "no knowledge sources yet: add one with `teambot ingest PATH` or "
            "`teambot sources add NAME directory PATH`",
            404,
        )
    for each in names:
        try:
            kb.source(each)
        except UnknownSourceError as error:
            raise OperatorError(str(error.args[0]), 404) from error
        await _refresh(kb, each, emit)


async def add_source(kb: KnowledgeBase, fields: dict[str, Any], *, emit: Emit) -> None:
    """Register a source from the fields of `teambot sources add` and index it now."""
    source = await checked_source(kb, fields)
    await _register(kb, source, emit)
    await _refresh(kb, source.name, emit)


async def checked_source(kb: KnowledgeBase, fields: dict[str, Any]) -> SourceSettings:
    """A new source from form or command fields: its kind's link parsed into the location, its
    keys checked; `OperatorError` (422 or 409) says what is wrong."""
    values = {k: v for k, v in fields.items() if v not in (None, "")}
    if values.get("kind") == "directory" and "location" in values:
        folder = await asyncio.to_thread(_resolve, str(values["location"]))
        if not await asyncio.to_thread(folder.exists):
            raise OperatorError(f"{folder} does not exist", 404)
        values["location"] = str(folder)
    values.setdefault("collection", kb.settings.default_collection)
    try:
        kind = kb.kinds.get(str(values.get("kind", "")))
        if "location" in values:  # a pasted link becomes the kind's location
            values["location"] = kind.parse_location(str(values["location"]))
        source = SourceSettings.model_validate(values)
        kb.kinds.check(source)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise OperatorError(f"invalid source: {problems}", 422) from error
    except ValueError as error:  # an unknown kind, a key the kind does not take, a bad link
        raise OperatorError(str(error), 422) from error
    if source.name in {s.name for s in kb.sources}:
        raise OperatorError(
            f"knowledge source {source.name!r} exists: `teambot refresh {source.name}` re-reads "
            f"it, `teambot sources remove {source.name}` removes it",
            409,
        )
    return source


async def register_source(kb: KnowledgeBase, source: SourceSettings, *, emit: Emit) -> None:
    """Register a checked source (the console refreshes it in the background)."""
    await _register(kb, source, emit)


async def remove_source(kb: KnowledgeBase, name: str, *, emit: Emit) -> None:
    """Delete a source with its documents, chunks and vectors."""
    try:
        documents, chunks = await kb.remove_source(name)
    except UnknownSourceError as error:
        raise OperatorError(str(error.args[0]), 404) from error
    except SourceConflictError as error:
        raise OperatorError(str(error), 409) from error
    except SourceBusyError as error:
        raise OperatorError(str(error), 409) from error
    if name == UPLOADS_SOURCE:  # the file store is the source's truth: empty it too
        from knowledge.uploads import forget_all, uploads_folder

        await forget_all(kb)
        await asyncio.to_thread(_empty, uploads_folder(kb))  # an older version's copies
    emit({"removed": [documents, chunks]})
    emit(
        {
            "notice": f"已删除来源 / removed source {name}: {documents} documents, "
            f"{chunks} chunks (and their vectors)"
        }
    )


def _resolve(location: str) -> Path:
    return Path(location).expanduser().resolve()


def _empty(folder: Path) -> None:
    if folder.is_dir():
        for path in folder.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
