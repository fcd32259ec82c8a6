"""The bodies of the CLI's knowledge commands: `ingest`, `refresh`, `sources [add|remove]`.

A change goes to the running server when one holds the embedded data folder (`bot.knowledge_ops.admin`),
else it runs here. Listing reads the catalog only: no model, no vector store.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bot.settings import Settings

console = Console()
errors = Console(stderr=True)

Local = Callable[[Any, Callable[[dict[str, Any]], None]], Awaitable[None]]


class Printer:
    """Shows what an operation emits: progress bars, notices, reports; remembers failure."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._tasks: dict[tuple[str, str], Any] = {}
        self.ok = True

    def __call__(self, item: dict[str, Any]) -> None:
        if "progress" in item:
            phase, done, total = item["progress"]
            key = (str(item.get("source", "")), str(phase))
            if key not in self._tasks:
                label = f"{key[0]} {phase}".strip()
                self._tasks[key] = self._progress.add_task(label, total=total)
            self._progress.update(self._tasks[key], completed=done, total=total)
        elif "notice" in item:
            self._progress.console.print(escape(str(item["notice"])), highlight=False)
        elif "report" in item:
            report = item["report"]
            colour = {"ok": "green", "partial": "yellow"}.get(report["result"], "red")
            self._progress.console.print(
                f"[{colour}]{report['result']}[/{colour}]: {escape(report['summary'])}",
                highlight=False,
            )
            for uri, error in report.get("failed", {}).items():
                errors.print(
                    f"[yellow]skipped[/yellow] {escape(uri)}: {escape(error)}", highlight=False
                )
            self.ok = self.ok and report["result"] in ("ok", "partial")
        elif "error" in item:
            errors.print(f"[red]{escape(str(item['error']))}[/red]", highlight=False)
            self.ok = False


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


def run_change(
    settings: Settings, method: str, path: str, payload: dict[str, Any], local: Local
) -> bool:
    """Send the change to the server holding the data folder, or run `local` here."""
    from bot.knowledge_ops.admin import find_server

    server = None
    if not settings.knowledge.chroma_url:
        try:
            server = find_server(Path(settings.knowledge.persist_dir).expanduser())
        except PermissionError as error:
            errors.print(f"[red]{escape(str(error))}[/red]", highlight=False)
            return False
    with _progress() as progress:
        printer = Printer(progress)
        if server is not None:
            progress.console.print(
                f"[dim]teambot serve (pid {server.pid}) holds the knowledge folder: "
                "the change runs there and is live at once[/dim]"
            )
            _remote(server.url, server.token, method, path, payload, printer)
        else:
            asyncio.run(_local(settings, local, printer))
    return printer.ok


def _remote(
    url: str, token: str, method: str, path: str, payload: dict[str, Any], printer: Printer
) -> None:
    import httpx

    headers = {"authorization": f"Bearer {token}"}
    timeout = httpx.Timeout(10.0, read=None)  # a big ingest streams progress for minutes
    try:
        with (
            httpx.Client(timeout=timeout, trust_env=False) as client,
            client.stream(method, f"{url}{path}", json=payload, headers=headers) as response,
        ):
            if response.status_code != 200:
                response.read()
                printer(
                    {"error": f"teambot serve answered {response.status_code}: {response.text}"}
                )
                return
            for line in response.iter_lines():
                if line.strip():
                    printer(json.loads(line))
    except httpx.TransportError as error:
        printer(
            {
                "error": f"teambot serve holds the knowledge folder but {url} cannot be reached "
                f"({error}); it must listen on 127.0.0.1 for the CLI"
            }
        )


async def _local(settings: Settings, local: Local, printer: Printer) -> None:
    from bot.app import open_knowledge
    from bot.knowledge_ops.changes import OperatorError

    # migrated, and reading every kind the server reads: the platforms' document kinds too
    kb = await open_knowledge(settings)
    try:
        await local(kb, printer)
    except OperatorError as error:
        printer({"error": str(error)})
    finally:
        await kb.close()


def ingest(settings: Settings, path: Path, name: str | None, collection: str | None) -> bool:
    from bot.knowledge_ops.changes import ingest_directory

    root = path.expanduser().resolve()
    payload = {"path": str(root), "name": name, "collection": collection}
    return run_change(
        settings,
        "POST",
        "/admin/knowledge/ingest",
        payload,
        lambda kb, emit: ingest_directory(kb, root, name=name, collection=collection, emit=emit),
    )


def refresh(settings: Settings, name: str | None) -> bool:
    from bot.knowledge_ops.changes import refresh_sources

    return run_change(
        settings,
        "POST",
        "/admin/knowledge/refresh",
        {"name": name},
        lambda kb, emit: refresh_sources(kb, name, emit=emit),
    )


def add(settings: Settings, fields: dict[str, Any]) -> bool:
    from bot.knowledge_ops.changes import add_source

    if fields.get("kind") == "directory":
        fields = {**fields, "location": str(Path(fields["location"]).expanduser().resolve())}
    return run_change(
        settings,
        "POST",
        "/admin/knowledge/sources",
        fields,
        lambda kb, emit: add_source(kb, fields, emit=emit),
    )


def remove(settings: Settings, name: str) -> bool:
    from bot.knowledge_ops.changes import remove_source

    return run_change(
        settings,
        "DELETE",
        f"/admin/knowledge/sources/{name}",
        {},
        lambda kb, emit: remove_source(kb, name, emit=emit),
    )


def show(settings: Settings) -> None:
    """Print the sources table from the catalog alone (fast: no model, no vector store)."""
    from rich.table import Table

    from jobs.scheduler import next_cron, zone
    from knowledge import ORIGINS
    from knowledge.registry import orphaned

    tz = zone(settings.knowledge.timezone)
    statuses = asyncio.run(_statuses(settings))
    table = Table(
        "source",
        "origin 来源",
        "kind",
        "collection",
        "documents",
        "chunks",
        "last run",
        "result",
        "next run",
    )
    for status in statuses:
        if orphaned(status):
            upcoming = "孤儿 orphan: `teambot sources remove`"
        elif not status.schedule:
            upcoming = "上传时 on upload" if status.origin == "upload" else "—"
        else:
            upcoming = _when(next_cron(status.schedule, tz), tz)
        result = status.result + (f" ({status.failed} failed)" if status.failed else "")
        row = (
            status.name,
            ORIGINS.get(status.origin, status.origin),
            status.kind,
            status.collection,
            str(status.documents),
            str(status.chunks),
            _when(status.last_run, tz),
            result,
            upcoming,
        )
        table.add_row(*(escape(cell) for cell in row))
    out = Console()  # sized now: COLUMNS may differ from when this module was imported
    out.print(table)
    if not statuses:
        out.print("no knowledge sources yet: `teambot ingest PATH` adds a folder")


async def _statuses(settings: Settings) -> list[Any]:
    from sqlalchemy.exc import SQLAlchemyError

    from bot.knowledge_ops.catalog import missing_sqlite_file
    from knowledge.catalog import Catalog
    from knowledge.registry import overview
    from knowledge.types import SourceStatus

    def never_run() -> list[Any]:
        return [
            SourceStatus(s.name, s.kind, s.collection, 0, 0, 0, None, "never", schedule=s.schedule)
            for s in settings.knowledge.sources
        ]

    if missing_sqlite_file(settings.storage.url):
        return never_run()  # listing creates nothing: no database file yet, nothing indexed
    catalog = await Catalog.open(settings.storage.url)
    try:
        return await overview(settings.knowledge, catalog)
    except SQLAlchemyError:  # a database never migrated: nothing indexed yet
        return never_run()
    finally:
        await catalog.close()


def _when(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if moment else "never"
