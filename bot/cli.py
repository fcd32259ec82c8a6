"""The `teambot` command line (typer + rich).

Imports are lazy: `teambot --help` must not pay for torch, chromadb, openai or the web server.
Each command imports what it needs inside its body; tests/bot/test_cli_imports.py keeps it so.
"""

from __future__ import annotations

import asyncio
import atexit
import gc
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from bot.app import App
    from bot.runtime import Runtime
    from bot.settings import Settings
    from knowledge import KnowledgeBase

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
    own_process = False  # set by `main`: the command is the whole process, not a caller's part


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
    from bot.settings import ConfigError, load_settings

    try:
        return load_settings(_State.config)
    except ConfigError as error:
        errors.print(f"[red]configuration error[/red]\n{escape(str(error))}", highlight=False)
        raise typer.Exit(2) from error


def _logging(settings: Settings, quiet: bool) -> None:
    from bot.logs import setup_logging
    from bot.settings import secret_values

    setup_logging(
        "WARNING" if quiet else settings.log.level,
        json_lines=settings.log.format == "json",
        redact=settings.log.redact,
        secrets=secret_values(settings),
    )


def _tidy_warnings(settings: Settings) -> None:
    """`ask` and `chat`: warnings as one line each after the answer, not raw log lines in it."""
    from adapters.terminal.reply import tidy_warnings
    from bot.logs import Redactor
    from bot.settings import secret_values

    tidy_warnings(console, Redactor(secret_values(settings)) if settings.log.redact else None)


def _one_shot() -> None:
    """A process that answers once and exits: no cyclic garbage collection (it would walk the
    ~1 million objects the imports make, again and again while they load and once more at
    exit: a fifth of a cold `ask`'s CPU), memory being given back at exit anyway. Only when
    the command is the process (`main`): a caller running it in its own process keeps its GC."""
    if not _State.own_process:
        return
    gc.disable()
    atexit.register(gc.freeze)  # the interpreter's final collection skips frozen objects


def _run(coro: Callable[[], Awaitable[T]]) -> T:
    async def wrapper() -> T:
        return await coro()

    return asyncio.run(wrapper())


async def _open(runtime: Runtime, *, warm: bool = True) -> App:
    """Open the runtime's core, turning start-up failures into one clear line and exit code 1."""
    return await _starting(runtime.settings, runtime.open(warm=warm))


async def _open_knowledge(settings: Settings) -> KnowledgeBase:
    """The knowledge base alone, without the chat core or the embedding model (it loads when a
    document changed)."""
    from bot.app import open_knowledge

    return await _starting(settings, open_knowledge(settings))


async def _starting(settings: Settings, opening: Awaitable[T]) -> T:
    from sqlalchemy.exc import SQLAlchemyError

    from knowledge import EmbeddingModelError

    try:
        with console.status("Opening the database and the knowledge base…"):
            return await opening
    except (OSError, SQLAlchemyError, EmbeddingModelError) as error:
        from bot.doctor import redact_url

        errors.print(f"[red]cannot start[/red]: {escape(str(error))}", highlight=False)
        errors.print(
            f"database: {escape(redact_url(settings.storage.url))} · "
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
    from importlib.resources import files

    path.write_text(files("bot").joinpath("sample_config.toml").read_text(encoding="utf-8"))
    console.print(f"wrote {path}: edit it, then run `teambot doctor`")


@cli.command()
def ask(
    question: Annotated[str, typer.Argument(help="the question, in any language")],
    thread: Annotated[str | None, typer.Option(help="continue this thread id")] = None,
) -> None:
    """Ask one question; the answer streams in with its sources (retrieval-only without a model)."""
    from engine.text import detect

    _one_shot()

    # Said at once: a cold start loads the embedding model for several seconds.
    errors.print("[dim]正在加载…[/dim]" if detect(question) == "zh" else "[dim]loading…[/dim]")
    from adapters.terminal.convert import to_inbound
    from adapters.terminal.reply import ConsoleReplyChannel
    from bot.runtime import Runtime

    settings = _settings()
    _logging(settings, quiet=True)
    _tidy_warnings(settings)

    async def main() -> None:
        runtime = Runtime(settings)
        await _open(runtime, warm=False)  # one question: load only what it needs
        try:
            reply = ConsoleReplyChannel(console, started=time.monotonic())
            await runtime.core.handle(to_inbound(question, thread or uuid.uuid4().hex), reply)
        finally:
            await runtime.close()

    _run(main)


@cli.command()
def chat() -> None:
    """Talk in one thread until you type /quit (or press Ctrl-D)."""
    errors.print("[dim]loading… / 正在加载…[/dim]")
    from adapters.terminal.convert import to_inbound
    from adapters.terminal.reply import ConsoleReplyChannel
    from bot.runtime import Runtime

    settings = _settings()
    _logging(settings, quiet=True)
    _tidy_warnings(settings)
    thread = uuid.uuid4().hex

    async def main() -> None:
        runtime = Runtime(settings)
        await _open(runtime)
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
                    await runtime.core.handle(
                        to_inbound(line, thread), ConsoleReplyChannel(console)
                    )
        finally:
            await runtime.close()

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
    from bot.knowledge_ops import commands as knowledge_cli

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
    from bot.knowledge_ops import commands as knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    knowledge_cli.show(settings)


@sources_cli.command("add")
def sources_add(
    name: Annotated[str, typer.Argument(help="unique name, shown in citations")],
    kind: Annotated[
        str, typer.Argument(help="directory | url | sitemap | … (`teambot sources kinds`)")
    ],
    location: Annotated[
        str, typer.Argument(help="a folder, a page URL, a sitemap URL, a pasted document link…")
    ],
    schedule: Annotated[
        str | None, typer.Option(help="cron (minute hour day month dow); default daily 03:00")
    ] = None,
    collection: Annotated[str | None, typer.Option(help="knowledge collection")] = None,
    option: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="a key of the kind's own, KEY=VALUE (repeatable; a JSON list or object as is), "
            "e.g. --set branch=main --set 'paths=[\"docs/**\"]'",
        ),
    ] = None,
) -> None:
    """Add a source at run time and index it now (kept in the catalog beside teambot.toml's)."""
    from bot.knowledge_ops import commands as knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    fields: dict[str, object] = {
        **_key_values(option or []),
        "name": name,
        "kind": kind,
        "location": location,
        "schedule": schedule,
        "collection": collection,
    }
    if not knowledge_cli.add(settings, fields):
        raise typer.Exit(1)


def _key_values(pairs: list[str]) -> dict[str, object]:
    """--set KEY=VALUE pairs; a value that reads as a JSON list or object is taken as one."""
    import json

    found: dict[str, object] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(
                f"{pair!r}: write KEY=VALUE, e.g. branch=main", param_hint="--set"
            )
        parsed: object = value
        if value[:1] in "[{":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as error:
                raise typer.BadParameter(f"{pair!r}: {error}", param_hint="--set") from error
        found[key.strip()] = parsed
    return found


@sources_cli.command("kinds")
def sources_kinds() -> None:
    """List the kinds of knowledge source this installation can read, with their locations."""
    from bot.app import source_kinds

    settings = _settings()
    for kind in source_kinds(settings):
        keys = ", ".join(kind.options.model_fields) or "—"
        typer.echo(f"{kind.name:<14} {kind.label}\n{'':<14} location: {kind.location_help}")
        typer.echo(f"{'':<14} own keys: {keys}")


@sources_cli.command("remove")
def sources_remove(name: Annotated[str, typer.Argument(help="the source to delete")]) -> None:
    """Delete a source with its documents, chunks and vectors, and say how many."""
    from bot.knowledge_ops import commands as knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    if not knowledge_cli.remove(settings, name):
        raise typer.Exit(1)


@cli.command()
def refresh(
    source: Annotated[str | None, typer.Argument(help="one source (default: every source)")] = None,
) -> None:
    """Refresh knowledge sources now: re-embed changed documents, drop removed ones."""
    from bot.knowledge_ops import commands as knowledge_cli

    settings = _settings()
    _logging(settings, quiet=True)
    if not knowledge_cli.refresh(settings, source):
        raise typer.Exit(1)


@cli.command("eval")
def eval_(
    file: Annotated[
        Path, typer.Argument(help="a .csv or .xlsx of questions (see docs/retrieval.md)")
    ],
    collection: Annotated[
        list[str] | None, typer.Option("--collection", help="a collection to search (repeatable)")
    ] = None,
    chat: Annotated[
        str | None, typer.Option(help="search what this chat sees: platform:chat_id")
    ] = None,
    report: Annotated[
        Path | None, typer.Option(help="also save the report here (JSON, and a .md table beside)")
    ] = None,
    misses: Annotated[int, typer.Option(help="misses to list per mode")] = 20,
) -> None:
    """Measure retrieval on a sheet of questions: hit@1, hit@5 and MRR for dense, lexical and
    hybrid, and the questions that missed."""
    from bot.knowledge_ops.evaluate import run_eval

    settings = _settings()
    _logging(settings, quiet=True)
    ok = _run(
        lambda: run_eval(
            settings, file, collections=collection or [], chat=chat, report=report, misses=misses
        )
    )
    if not ok:
        raise typer.Exit(1)


def _when(moment: datetime | None, tz: tzinfo) -> str:
    return moment.astimezone(tz).strftime("%Y-%m-%d %H:%M %Z") if moment else "never"


@cli.command()
def doctor() -> None:
    """Check the config files, database, knowledge base, model server and enabled platforms."""
    from bot.doctor import diagnose
    from bot.runtime import Runtime
    from bot.settings import missing_credentials

    settings = _settings()
    _logging(settings, quiet=True)
    rows = [("config", "ok", _config_detail())]
    problems = missing_credentials(settings)  # such a platform's SDK would only fail less clearly
    rows += [(f"{platform}: settings", "error", problem) for platform, problem in problems.items()]

    async def main() -> None:
        runtime = Runtime(settings, without=problems)
        app = await _open(runtime)
        try:
            rows.extend(await diagnose(runtime, app))
        finally:
            await runtime.close()

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


def _few_malloc_arenas() -> None:
    """At most two glibc malloc arenas (as MALLOC_ARENA_MAX=2 would; the variable, when set, is
    left alone): a serving process runs one event loop and a few worker threads, and each thread
    that allocates would otherwise keep an arena of its own, ~15 MB resident in all."""
    import ctypes
    import os

    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, 2)  # M_ARENA_MAX
    except (OSError, AttributeError):  # not glibc: its allocator decides
        pass


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="override [server] host")] = None,
    port: Annotated[int | None, typer.Option(help="override [server] port")] = None,
) -> None:
    """Run teambot: web chat, console, enabled chat platforms, scheduled refresh, health, metrics."""
    import uvicorn

    _few_malloc_arenas()

    from bot.server import create_server
    from bot.settings import missing_credentials

    settings = _settings()
    problems = missing_credentials(settings)
    if problems:
        errors.print("[red]configuration error[/red]", highlight=False)
        for problem in problems.values():
            errors.print(f"  {escape(problem)}", highlight=False)
        raise typer.Exit(2)
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


def _config_detail() -> str:
    from bot.settings import config_files

    read = config_files(_State.config)
    if not read:
        return "defaults + environment (no ./teambot.toml: `teambot init` writes one)"
    return " + ".join(str(path) for path in read) + " + environment"


agents_cli = typer.Typer(help="Named accounts of the agents' console.", no_args_is_help=True)
cli.add_typer(agents_cli, name="agents")
NewPassword = Annotated[
    str,
    typer.Option(
        prompt=True, confirmation_prompt=True, hide_input=True, help="10 characters or more"
    ),
]


def _accounts_call(coro: Callable[[], Awaitable[T]]) -> T:
    from bot.console.accounts import AccountError

    try:
        return _run(coro)
    except AccountError as error:
        errors.print(f"[red]{escape(str(error))}[/red]", highlight=False)
        raise typer.Exit(1) from error


@agents_cli.command("add")
def agents_add(
    name: str,
    password: NewPassword,
    role: Annotated[str, typer.Option(help="admin | agent")] = "agent",
) -> None:
    """Add an agent who signs in to the console as NAME."""
    from bot.console import agents_cli as body

    url = _settings().storage.url
    added = _accounts_call(lambda: body.add(url, name, password, body.Role(role)))
    console.print(f"added {escape(added.name)} ({added.role.value})")


@agents_cli.command("passwd")
def agents_passwd(name: str, password: NewPassword) -> None:
    """Set NAME's password; every console session of NAME ends."""
    from bot.console import agents_cli as body

    url = _settings().storage.url
    ended = _accounts_call(lambda: body.passwd(url, name, password))
    console.print(f"password of {escape(name)} changed; {ended} session(s) ended")


@agents_cli.command("remove")
def agents_remove(name: str) -> None:
    """Remove NAME's account and end their sessions."""
    from bot.console import agents_cli as body

    url = _settings().storage.url
    _accounts_call(lambda: body.remove(url, name))
    console.print(f"removed {escape(name)}")


@agents_cli.command("list")
def agents_list() -> None:
    """The console's agents and their roles."""
    from bot.console import agents_cli as body

    url = _settings().storage.url
    for agent in _accounts_call(lambda: body.listing(url)):
        console.print(f"{escape(agent.name)}\t{agent.role.value}")


def main() -> None:
    """Console-script entry point."""
    _State.own_process = True
    try:
        cli()
    except Exception as error:
        from bot.settings import ConfigError

        if not isinstance(error, ConfigError):  # raised lazily inside a command
            raise
        errors.print(f"[red]configuration error[/red]\n{escape(str(error))}", highlight=False)
        sys.exit(2)
