"""The `teambot` command line (typer + rich)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from importlib.resources import files
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from sqlalchemy.exc import SQLAlchemyError

from bot.adapters import build_adapters
from bot.app import App, build_app
from bot.logs import setup_logging
from bot.settings import ConfigError, Settings, load_settings, secret_values
from bot.terminal import ConsoleReplyChannel
from engine.messages import ChatType, Inbound, Sender
from knowledge import EmbeddingModelError

cli = typer.Typer(
    help="teambot: a knowledge-grounded assistant for team chats.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_cli = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
cli.add_typer(db_cli, name="db")

console = Console()
errors = Console(stderr=True)
T = TypeVar("T")


class _State:
    config: Path | None = None


ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="teambot.toml to read (default: $TEAMBOT_CONFIG or ./teambot.toml)"
    ),
]


@cli.callback()
def _root(config: ConfigOption = None) -> None:
    _State.config = config


def _settings() -> Settings:
    try:
        return load_settings(_State.config)
    except ConfigError as error:
        errors.print(f"[red]configuration error[/red]\n{escape(str(error))}", highlight=False)
        raise typer.Exit(2) from error


def _logging(settings: Settings, quiet: bool) -> None:
    setup_logging(
        "WARNING" if quiet else settings.log.level,
        json_lines=settings.log.format == "json",
        redact=settings.log.redact,
        secrets=secret_values(settings),
    )


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro()

    return asyncio.run(wrapper())


async def _open(settings: Settings, *, seed: bool = True) -> App:
    """Build the app, turning start-up failures into one clear line and exit code 1."""
    try:
        with console.status("Opening the database and the knowledge base…"):
            return await build_app(settings, seed=seed)
    except (OSError, SQLAlchemyError, EmbeddingModelError) as error:
        errors.print(f"[red]cannot start[/red]: {escape(str(error))}", highlight=False)
        errors.print(
            f"database: {escape(_redact_url(settings.storage.url))} · "
            f"knowledge: {escape(str(settings.knowledge.persist_dir))}",
            highlight=False,
        )
        raise typer.Exit(1) from error


@cli.command()
def init(
    path: Annotated[Path, typer.Argument(help="where to write the sample config")] = Path(
        "teambot.toml"
    ),
    force: Annotated[bool, typer.Option("--force", help="overwrite an existing file")] = False,
) -> None:
    """Write a commented sample teambot.toml (every key, with its default)."""
    if path.exists() and not force:
        errors.print(f"{path} exists; use --force to overwrite it")
        raise typer.Exit(1)
    path.write_text(files("bot").joinpath("sample_config.toml").read_text(encoding="utf-8"))
    console.print(f"wrote {path}: edit it, then run `teambot doctor`")


def _inbound(text: str, chat_id: str, thread_id: str) -> Inbound:
    return Inbound(
        platform="cli",
        tenant="local",
        chat_id=chat_id,
        chat_type=ChatType.DIRECT,
        thread_id=thread_id,
        message_id=uuid.uuid4().hex,
        sender=Sender(id="cli", display_name="terminal"),
        text=text,
    )


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in any language")],
    thread: Annotated[str | None, typer.Option(help="continue this thread id")] = None,
) -> None:
    """Ask one question; the answer streams in, with its sources."""
    settings = _settings()
    _logging(settings, quiet=True)

    async def main() -> None:
        app = await _open(settings)
        try:
            started = time.monotonic()
            reply = ConsoleReplyChannel(console, started=started)
            await app.conversation.handle(
                _inbound(question, "cli", thread or uuid.uuid4().hex), reply
            )
        finally:
            await app.close()

    _run(main)


@cli.command()
def chat() -> None:
    """Talk in one thread until you type /quit (or press Ctrl-D)."""
    settings = _settings()
    _logging(settings, quiet=True)
    thread = uuid.uuid4().hex

    async def main() -> None:
        app = await _open(settings)
        console.print(
            "[dim]One thread; earlier turns are remembered. /quit to leave, /new for a new thread.[/dim]"
        )
        try:
            while True:
                try:
                    line = await asyncio.to_thread(console.input, "[bold]you>[/bold] ")
                except (EOFError, KeyboardInterrupt):
                    break
                if line.strip() in {"/quit", "/exit"}:
                    break
                if line.strip() == "/new":
                    nonlocal thread
                    thread = uuid.uuid4().hex
                    continue
                if line.strip():
                    await app.conversation.handle(
                        _inbound(line, "cli", thread), ConsoleReplyChannel(console)
                    )
        finally:
            await app.close()

    _run(main)


@cli.command()
def ingest(
    path: Annotated[Path, typer.Argument(exists=True, help="a folder (or file) of documents")],
    name: Annotated[
        str | None,
        typer.Option("--name", "--source", help="source name (default: the folder name)"),
    ] = None,
    collection: Annotated[
        str | None, typer.Option(help="knowledge collection (default: the default one)")
    ] = None,
) -> None:
    """Add a folder as a knowledge source and index it now (only changed files are re-embedded);
    it is then refreshed on its schedule. Live at once in a running `teambot serve`."""
    from bot import knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    if not knowledge_cli.ingest(settings, path, name, collection):
        raise typer.Exit(1)


sources_cli = typer.Typer(
    help="Knowledge sources: list them (no subcommand), add or remove one.",
    invoke_without_command=True,
)
cli.add_typer(sources_cli, name="sources")


@sources_cli.callback()
def sources(ctx: typer.Context) -> None:
    """List the knowledge sources: origin, documents, chunks, last run, its result, next run."""
    if ctx.invoked_subcommand is not None:
        return
    from bot import knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    knowledge_cli.show(settings)


@sources_cli.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="unique name, shown in citations")],
    kind: Annotated[str, typer.Argument(help="directory | url | sitemap")],
    location: Annotated[str, typer.Argument(help="a folder, a page URL or a sitemap URL")],
    schedule: Annotated[
        str | None, typer.Option(help="cron (minute hour day month dow); default daily 03:00")
    ] = None,
    collection: Annotated[str | None, typer.Option(help="knowledge collection")] = None,
) -> None:
    """Add a source at run time and index it now (kept in the catalog beside teambot.toml's)."""
    from bot import knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    fields = {
        "name": name,
        "kind": kind,
        "location": location,
        "schedule": schedule,
        "collection": collection,
    }
    if not knowledge_cli.add(settings, fields):
        raise typer.Exit(1)


@sources_cli.command("remove")
def sources_remove(name: Annotated[str, typer.Argument(help="the source to delete")]) -> None:
    """Delete a source with its documents, chunks and vectors, and say how many."""
    from bot import knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    if not knowledge_cli.remove(settings, name):
        raise typer.Exit(1)


@cli.command()
def refresh(
    source: Annotated[str | None, typer.Argument(help="one source (default: every source)")] = None,
) -> None:
    """Refresh knowledge sources now: re-embed changed documents, drop removed ones."""
    from bot import knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    if not knowledge_cli.refresh(settings, source):
        raise typer.Exit(1)


def _when(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if moment else "never"


@cli.command()
def doctor() -> None:
    """Check the configuration, database, knowledge base and model server."""
    settings = _settings()
    _logging(settings, quiet=True)
    rows: list[tuple[str, str, str]] = []  # (check, status, detail)

    def row(check: str, status: str, detail: str) -> None:
        rows.append((check, status, detail))

    async def main() -> None:
        row("config", "ok", str(_State.config or "defaults + environment"))
        app = await _open(settings)
        try:
            row("database", "ok", _redact_url(settings.storage.url))
            chunks = await app.knowledge.store.count()
            detail = f"{chunks} chunks in collection {settings.knowledge.collection!r}"
            row("knowledge", "ok" if chunks else "empty", detail)
            for adapter in build_adapters(settings, app.conversation):
                for check in await adapter.check():
                    row(f"{adapter.name}: {check.name}", check.status, check.detail)
            if app.llm is None:
                row("model server", "disabled", "retrieval-only answers ([llm] enabled = false)")
                return
            report = await app.llm.probe()
            if not report.reachable:
                row(
                    "model server",
                    "unreachable",
                    f"{report.base_url}: {report.error} — answers are retrieval-only until it is up",
                )
                return
            separated = {
                True: "reasoning separated (reasoning_content)",
                False: "reasoning inline: <think> is stripped by teambot",
                None: "reasoning separation unknown",
            }[report.reasoning_separated]
            timing = f"{report.latency:.2f} s" if report.latency is not None else report.error
            row(
                "model server",
                "ok" if report.health_ok else "degraded",
                f"{report.base_url} · model {report.model} · {separated} · {timing}",
            )
        finally:
            await app.close()

    _run(main)
    colour = {"ok": "green", "empty": "yellow", "disabled": "yellow", "warning": "yellow"}
    for check, status, detail in rows:
        style = colour.get(status, "red" if status == "error" else "yellow")
        console.print(
            f"[{style}]{status:<11}[/{style}] {check:<13} {escape(detail)}",
            soft_wrap=True,
            highlight=False,
        )
    if any(status == "error" for _, status, _ in rows):
        raise typer.Exit(1)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="override [server] host")] = None,
    port: Annotated[int | None, typer.Option(help="override [server] port")] = None,
) -> None:
    """Run the HTTP server: web chat at /, /healthz, /readyz (platform adapters plug in later)."""
    import uvicorn

    from bot.server import create_server

    settings = _settings()
    _logging(settings, quiet=False)
    if host:
        settings.server.host = host
    if port:
        settings.server.port = port
    console.print(
        f"teambot on http://{settings.server.host}:{settings.server.port}/ "
        f"(model server {settings.llm.base_url if settings.llm.enabled else 'disabled'})"
    )
    uvicorn.run(
        create_server(settings),
        host=settings.server.host,
        port=settings.server.port,
        log_level=settings.log.level.lower(),
        log_config=None,  # keep teambot's handler: JSON lines and redaction apply to uvicorn too
        timeout_graceful_shutdown=30,
    )


@db_cli.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from bot.db import current, upgrade

    settings = _settings()
    upgrade(settings.storage.url, revision)
    console.print(f"database at revision {current(settings.storage.url)}")


@db_cli.command("current")
def db_current() -> None:
    """Show the database's current revision."""
    from bot.db import current

    console.print(current(_settings().storage.url) or "(empty database)")


def _redact_url(url: str) -> str:
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"


def main() -> None:
    """Console-script entry point."""
    try:
        cli()
    except ConfigError as error:  # raised lazily inside a command
        errors.print(f"[red]configuration error[/red]\n{escape(str(error))}", highlight=False)
        sys.exit(2)
