"""Benchmark: the path of one Slack message, traced rather than counted by hand (issue #15).

Run on demand: `.venv/bin/python -m pytest tests/perf/test_message_path.py -s`.

teambot's whole server (`bot.server.create_server`, uvicorn on a real socket, Slack in HTTP mode,
the knowledge base on the bundled sample with the real embedder, the fake SGLang, the fake Slack
Web API over HTTP) answers one signed @mention. A profile hook (`sys.setprofile`, and
`threading.setprofile` for the worker threads) records every call of a function in bot, adapters,
jobs, engine or knowledge from the moment the `/slack/events` handler is entered until the reply
channel's `finish` returns. A call belongs to the message when the handler is up its stack, or
when it runs in a task or a worker thread started from such a call (a task factory and a wrapped
`run_in_executor` carry that over), so the knowledge poller, the scheduler's jobs and anything
else running meanwhile stay out. Module import code and comprehensions are not counted; dataclass
`__post_init__` and `engine.clean` are counted apart as helpers.

A crossing is a distinct caller -> callee edge between two of our packages, the caller being the
nearest function of ours up the stack (or the one that created the task's coroutine, or submitted
the thread's work). Against the arrows (bot -> adapters | jobs -> engine -> knowledge) are the
edges to a higher layer or between adapters and jobs; those into a port's method (engine calls an
adapter's ReplyChannel, an adapter calls the bot's engine.ports.Core) are listed apart.

One warm-up message goes first, untraced, so lazily built things (imports, caches, the model's
first batch) are not mistaken for the path. Prints the figures and the lists, writes them to
tests/artifacts/message_path.json, and asserts only what holds by design.
"""

from __future__ import annotations

import asyncio
import dis
import json
import os
import shutil
import sys
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import greenlet
import httpx
import pytest
from pydantic import SecretStr

import bot
from adapters.slack.adapter import SlackAdapter
from adapters.slack.config import SlackSettings
from adapters.slack.reply import SlackReplyChannel
from bot.server import create_server
from bot.settings import ServerSettings, Settings
from engine.config import ConversationSettings, LLMSettings, StorageSettings
from engine.ports import Core, ReplyChannel
from knowledge.config import KnowledgeSettings
from tests.bot.served import running
from tests.fakes.sglang import FakeSGLang
from tests.fakes.slack import (
    BOT_TOKEN,
    BOT_USER,
    SIGNING_SECRET,
    FakeSlack,
    event_body,
    signed_headers,
    user_message,
)

ROOT = Path(bot.__file__).resolve().parent.parent
ARTIFACT = ROOT / "tests" / "artifacts" / "message_path.json"
LAYERS = {"bot": 0, "adapters": 1, "jobs": 1, "engine": 2, "knowledge": 3}
INLINE = {"<listcomp>", "<dictcomp>", "<setcomp>", "<genexpr>"}  # counted as their function's
RETURN = dis.opmap["RETURN_VALUE"]
ANSWER = "Full-time staff get **25 days** of annual leave a year [1]. " * 3
QUESTION = "How many days of annual leave do I get?"
WARM_UP = "How do I reset the VPN?"  # another question: the embedder remembers recent ones


@dataclass(frozen=True)
class Fn:
    name: str  # module:qualname
    module: str
    package: str

    @property
    def helper(self) -> bool:
        return self.name.endswith(".__post_init__") or self.module == "engine.clean"


@dataclass(frozen=True)
class Origin:
    """Who started a task or a worker thread's work on the message's path."""

    fn: Fn | None
    kind: str  # "task" | "thread"


@dataclass
class Trace:
    functions: dict[str, Fn] = field(default_factory=dict)
    after: dict[str, Fn] = field(default_factory=dict)  # first seen after finish returned
    edges: dict[tuple[str, str], set[str]] = field(default_factory=dict)
    roots: set[str] = field(default_factory=set)
    skipped_imports: set[str] = field(default_factory=set)


class Tracer:
    """Records the calls of our packages on one message's path (see the module docstring)."""

    def __init__(self, handler: CodeType, finish: CodeType) -> None:
        self._handler, self._finish = handler, finish
        self._prefix = str(ROOT) + os.sep
        self._codes: dict[CodeType, Fn | str | None] = {}
        self._by_line: dict[tuple[str, str], list[tuple[CodeType, Fn]]] = {}
        self._tasks: dict[asyncio.Task[Any], Origin] = {}
        self._local = threading.local()
        self._loop_thread = threading.get_ident()
        self.armed = self.open = self.closed = False
        self._entry: FrameType | None = None
        self.trace = Trace()

    # -- install ------------------------------------------------------------------------------

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        """Before the server starts, so every worker thread it starts gets the hook too."""
        self._loop_thread = threading.get_ident()
        sys.set_coroutine_origin_tracking_depth(64)
        loop.set_task_factory(self._task_factory)
        submit = loop.run_in_executor

        def run_in_executor(executor: Any, func: Callable[..., Any], *args: Any) -> Any:
            origin = self._origin_at(sys._getframe(1), "thread") if self.open else None
            if origin is None:
                return submit(executor, func, *args)

            def marked(*inner: Any) -> Any:
                self._local.origin = origin
                try:
                    return func(*inner)
                finally:
                    self._local.origin = None

            return submit(executor, marked, *args)

        loop.run_in_executor = run_in_executor  # type: ignore[method-assign,assignment]
        threading.setprofile(self._profile)
        sys.setprofile(self._profile)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        sys.setprofile(None)
        threading.setprofile(None)
        sys.set_coroutine_origin_tracking_depth(0)
        loop.set_task_factory(None)
        del loop.run_in_executor

    # -- the hook -----------------------------------------------------------------------------

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if not self.armed or self.closed:
            return
        if event == "call":
            fn = self._describe(frame.f_code)
            if isinstance(fn, Fn):
                self._called(frame, fn)
        elif event == "return" and frame.f_code is self._finish and self.open:
            code = frame.f_code.co_code
            if frame.f_lasti >= 0 and code[frame.f_lasti] == RETURN:  # not a suspension
                self.open = False

    def _called(self, frame: FrameType, fn: Fn) -> None:
        if frame.f_code.co_name == "<module>":
            self.trace.skipped_imports.add(fn.module)
            return
        if self._entry is None:
            if frame.f_code is not self._handler:
                return
            self._entry, self.open = frame, True
            self.trace.roots.add(fn.name)
            self.trace.functions[fn.name] = fn
            return
        if frame is self._entry:
            return  # the handler resumed
        found = self._walk(frame.f_back)
        if found is None:
            return  # not on the message's path
        caller, kind = found
        seen = self.trace.functions if self.open else self.trace.after
        if fn.name not in self.trace.functions:
            seen.setdefault(fn.name, fn)
        if caller is None:
            self.trace.roots.add(fn.name)
        else:
            self.trace.edges.setdefault((caller.name, fn.name), set()).add(kind)

    def _walk(self, frame: FrameType | None) -> tuple[Fn | None, str] | None:
        """(the nearest function of ours up the stack, how it called) when the handler is up the
        stack or this task or thread was started on the path; None otherwise."""
        caller: Fn | None = None
        kind = "direct"
        strand: Any = None
        while True:
            if frame is None:
                # SQLAlchemy's asyncio runs its sync code in a greenlet whose stack ends there:
                # carry on in the greenlet that switched to it (the awaiting coroutine)
                strand = strand.parent if strand is not None else greenlet.getcurrent().parent
                if strand is None:
                    break
                frame = strand.gr_frame
                kind = "via library"
                continue
            if frame is self._entry:
                return (caller, kind) if caller else (self._describe_fn(frame.f_code), kind)
            fn = self._describe(frame.f_code)
            if caller is None:
                if fn is None:
                    kind = "via library"
                elif isinstance(fn, Fn):
                    caller = fn
            frame = frame.f_back
        origin = self._current_origin()
        if origin is None:
            return None
        return (caller, kind) if caller else (origin.fn, origin.kind)

    def _current_origin(self) -> Origin | None:
        if threading.get_ident() != self._loop_thread:
            return getattr(self._local, "origin", None)
        try:
            task = asyncio.current_task()
        except RuntimeError:
            return None
        return self._tasks.get(task) if task is not None else None

    def _origin_at(self, frame: FrameType, kind: str) -> Origin | None:
        found = self._walk(frame)
        return None if found is None else Origin(found[0], kind)

    def _task_factory(
        self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any
    ) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        if self.open:
            origin = self._origin_at(sys._getframe(1), "task")
            if origin is not None:
                creator = self._creator(coro)
                self._tasks[task] = Origin(creator or origin.fn, "task")
        return task

    def _creator(self, coro: Any) -> Fn | None:
        """The function of ours that created the task's coroutine (not the helper that started
        the task): the innermost of ours in the coroutine's recorded origin."""
        for filename, line, name in getattr(coro, "cr_origin", None) or ():
            for code, fn in self._by_line.get((filename, name), ()):
                if any(number == line for _, _, number in code.co_lines()):
                    return fn
        return None

    # -- names --------------------------------------------------------------------------------

    def _describe(self, code: CodeType) -> Fn | str | None:
        """Fn for a function of our packages, "inline" for a comprehension, None otherwise."""
        try:
            return self._codes[code]
        except KeyError:
            pass
        described: Fn | str | None = None
        path = code.co_filename
        if path.startswith(self._prefix) and path.endswith(".py"):
            relative = path[len(self._prefix) : -3]
            package = relative.split(os.sep, 1)[0]
            if package in LAYERS:
                if code.co_name in INLINE:
                    described = "inline"
                else:
                    module = relative.replace(os.sep, ".").removesuffix(".__init__")
                    described = Fn(f"{module}:{code.co_qualname}", module, package)
                    self._by_line.setdefault((path, code.co_name), []).append((code, described))
        self._codes[code] = described
        return described

    def _describe_fn(self, code: CodeType) -> Fn | None:
        fn = self._describe(code)
        return fn if isinstance(fn, Fn) else None


# -- the figures ------------------------------------------------------------------------------


def port_methods(port: type) -> set[str]:
    return {name for name in vars(port) if not name.startswith("_")}


def against_arrows(caller: Fn, callee: Fn) -> bool:
    up = LAYERS[callee.package] < LAYERS[caller.package]
    sideways = {caller.package, callee.package} == {"adapters", "jobs"}
    return up or sideways


def figures(trace: Trace) -> dict[str, Any]:
    fns = {**trace.after, **trace.functions}
    path = trace.functions.values()
    crossings = []
    for (a, b), kinds in sorted(trace.edges.items()):
        caller, callee = fns[a], fns[b]
        if caller.package == callee.package:
            continue
        if b in trace.after and b not in trace.functions:
            continue  # a callee first reached after finish returned
        method = callee.name.rsplit(".", 1)[-1]
        port = ""
        if callee.package == "adapters" and method in port_methods(ReplyChannel):
            port = "ReplyChannel"
        elif callee.package == "bot" and method in port_methods(Core):
            port = "Core"
        crossings.append(
            {
                "caller": a,
                "callee": b,
                "packages": f"{caller.package} -> {callee.package}",
                "how": sorted(kinds),
                "against_arrows": against_arrows(caller, callee),
                "port": port,
            }
        )
    main = [f for f in path if not f.helper]
    helpers = [f for f in path if f.helper]
    by_module: dict[str, list[str]] = {}
    for fn in sorted(path, key=lambda f: f.name):
        by_module.setdefault(fn.module, []).append(fn.name.split(":", 1)[1])
    against = [c for c in crossings if c["against_arrows"]]
    helper_names = {f.name for f in helpers}
    return {
        "tree": str(ROOT),
        "functions": len(main),
        "helper_functions": len(helpers),
        "modules": len({f.module for f in path}),
        "modules_without_helpers": len({f.module for f in main}),
        "packages": sorted({f.package for f in path}),
        "crossings": len(crossings),
        "crossings_without_helpers": len([c for c in crossings if c["callee"] not in helper_names]),
        "crossings_by_packages": _tally(c["packages"] for c in crossings),
        "against_arrows_through_ports": len([c for c in against if c["port"]]),
        "against_arrows_other": len([c for c in against if not c["port"]]),
        "roots": sorted(trace.roots),
        "path": by_module,
        "helpers": sorted(f.name for f in helpers),
        "crossing_edges": crossings,
        "calls": [
            {"caller": a, "callee": b, "how": sorted(kinds)}
            for (a, b), kinds in sorted(trace.edges.items())
            if b in trace.functions
        ],
        "after_finish": sorted(trace.after),
        "import_time_modules_skipped": sorted(trace.skipped_imports),
    }


def _tally(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return dict(sorted(counts.items()))


def show(report: dict[str, Any]) -> None:
    print(f"\nThe path of one Slack HTTP @mention in {report['tree']}")
    rows = [
        ("functions (without helpers)", report["functions"]),
        ("helpers (__post_init__, engine.clean)", report["helper_functions"]),
        ("modules (without helpers' own)", report["modules_without_helpers"]),
        ("modules", report["modules"]),
        ("distinct calls (caller -> callee)", len(report["calls"])),
        ("crossings between packages", report["crossings"]),
        ("  into helpers", report["crossings"] - report["crossings_without_helpers"]),
        ("  against the arrows, through a port", report["against_arrows_through_ports"]),
        ("  against the arrows, otherwise", report["against_arrows_other"]),
    ]
    for label, value in rows:
        print(f"  {label:<40} {value:>4}")
    for pair, count in report["crossings_by_packages"].items():
        print(f"    {pair:<38} {count:>4}")
    print("\nFunctions by module:")
    for module, names in report["path"].items():
        print(f"  {module} ({len(names)}): {', '.join(names)}")
    print("\nCrossings (caller -> callee):")
    for c in report["crossing_edges"]:
        mark = ""
        if c["against_arrows"]:
            mark = f"  [against the arrows{', port ' + c['port'] if c['port'] else ''}]"
        print(f"  {c['caller']} -> {c['callee']} ({', '.join(c['how'])}){mark}")
    print(f"\nRoots: {', '.join(report['roots'])}")
    print(f"First reached after finish returned (not counted): {len(report['after_finish'])}")
    for name in report["after_finish"]:
        print(f"  {name}")


# -- the run ----------------------------------------------------------------------------------


@dataclass
class Served:
    client: httpx.AsyncClient
    slack: FakeSlack
    tracer: Tracer


@pytest.fixture
async def served(
    tmp_path: Path, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Served]:
    fake_sglang.behave(answer=ANSWER, token_delay=0.02)
    shutil.copytree(sample_index, tmp_path / "chroma")
    loop = asyncio.get_running_loop()
    handler = _handler_code()
    tracer = Tracer(handler, SlackReplyChannel.finish.__code__)
    tracer.install(loop)
    try:
        async with FakeSlack() as slack:
            config = Settings(
                server=ServerSettings(recovery_sweep_seconds=3600),
                storage=StorageSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"),
                llm=LLMSettings(base_url=fake_sglang.base_url, first_token_timeout=5),
                conversation=ConversationSettings(),
                knowledge=KnowledgeSettings(persist_dir=tmp_path / "chroma", collection="test-kb"),
                slack=SlackSettings(
                    enabled=True,
                    mode="http",
                    bot_token=SecretStr(BOT_TOKEN),
                    signing_secret=SecretStr(SIGNING_SECRET),
                    api_url=slack.api_url,
                    update_interval=0.2,
                ),
            )
            async with (
                running(create_server(config)) as base,
                httpx.AsyncClient(base_url=base, trust_env=False, timeout=30) as client,
            ):
                yield Served(client, slack, tracer)
    finally:
        tracer.uninstall(loop)


def _handler_code() -> CodeType:
    """The code of the /slack/events route (a closure in SlackAdapter.router)."""
    for const in SlackAdapter.router.__code__.co_consts:
        if isinstance(const, CodeType) and const.co_name == "slack_events":
            return const
    raise AssertionError("SlackAdapter.router defines no slack_events route")


async def ask(served: Served, user: str, question: str) -> None:
    """One signed @mention, answered to the end (the final message with its buttons)."""
    slack = served.slack
    seen = len(slack.calls)
    body = json.dumps(event_body(user_message(f"<@{BOT_USER}> {question}", user=user)))
    response = await served.client.post("/slack/events", content=body, headers=signed_headers(body))
    assert response.status_code == 200, response.text

    def final() -> bool:
        return any(
            c.method in ("chat.update", "chat.postMessage") and c.args.get("blocks")
            for c in slack.calls[seen:]
        )

    await slack.wait_for(final, within=60)


async def test_the_path_of_one_slack_message(served: Served) -> None:
    await ask(served, "U0WARM", WARM_UP)  # untraced: lazy imports and first-use caches
    served.tracer.armed = True
    await ask(served, "U0ADA", QUESTION)
    for _ in range(500):  # the final message is out; finish returns right after
        if not served.tracer.open:
            break
        await asyncio.sleep(0.01)
    assert not served.tracer.open, "SlackReplyChannel.finish did not return within 5 s"
    await asyncio.sleep(0.5)  # what the path still does after finish (listed, not counted)
    served.tracer.closed = True

    report = figures(served.tracer.trace)
    show(report)
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    # What holds by design, whatever the figures:
    assert report["roots"] == [f"adapters.slack.adapter:{_handler_code().co_qualname}"]
    assert {"adapters", "engine", "knowledge"} <= set(report["packages"])
    edges = report["crossing_edges"]
    # the core and the knowledge base reach an adapter only through the ReplyChannel port
    into_adapters = [
        c for c in edges if c["packages"] in ("engine -> adapters", "knowledge -> adapters")
    ]
    assert all(c["port"] == "ReplyChannel" for c in into_adapters), into_adapters
    # the knowledge base calls nothing of ours above it
    assert not [c for c in edges if c["packages"].startswith("knowledge -> ")]
    # the bot is reached from below only as the adapters' engine.ports.Core
    into_bot = [c for c in edges if c["packages"].endswith("-> bot")]
    assert all(c["port"] == "Core" and c["packages"] == "adapters -> bot" for c in into_bot), (
        into_bot
    )
    # nothing else goes up the layers (bot -> adapters | jobs -> engine -> knowledge)
    upward = [c for c in edges if c["against_arrows"] and not c["port"]]
    assert not upward, upward
    # adapters and jobs do not call each other, and no job runs on a message's path
    assert "jobs" not in report["packages"]
