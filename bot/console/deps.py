"""What the console's routes receive through `Depends`: the `Console` (the running App, the
sign-in gate, the templates, the adapters), the agent signed in, an admin, a form whose CSRF
token was checked.

A guard that refuses raises `Refused` with the page to show instead (the "not set up" page, the
way to the sign-in page, a 403), which the handler `mount_console` installs returns as it is.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qs, quote, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.base import Adapter
from adapters.names import Directory
from bot.app import App
from bot.console.accounts import Accounts, SignedIn
from bot.console.auth import Gate
from bot.console.config import ConsoleSettings
from bot.console.present import Clock, templates
from engine.messages import ThreadKey
from jobs.faq import ManagedFaq

log = logging.getLogger(__name__)

PREFIX = "/console"
# The navigation bar: (page id, path, label).
NAV: list[tuple[str, str, str]] = [
    ("escalations", "/escalations", "升级 Escalations"),
    ("conversations", "/conversations", "会话 Conversations"),
    ("knowledge", "/knowledge", "知识 Knowledge"),
    ("sources", "/sources", "知识库 Sources"),
    ("dashboard", "/dashboard", "数据 Dashboard"),
]
ADMINS_ONLY = "仅管理员 / Admins only"
CSRF_WRONG = "CSRF token missing or wrong"
_CHANGES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class Refused(Exception):
    """A guard's answer in place of the page: `response` is sent as it is."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


class Console:
    """What every console page needs; `app` returns the running App (None while starting)."""

    def __init__(
        self,
        settings: ConsoleSettings,
        app: Callable[[], App | None],
        adapters: Sequence[Adapter],
        *,
        web_chat: bool = True,
        labels: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        self.settings = settings
        self._app = app
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.web_chat = web_chat
        self.labels = dict(labels or {})  # platform -> (中文, English), from the registry
        self.gate = Gate(settings, lambda: found.store.engine if (found := app()) else None)
        self.clock: Clock | None = None
        self._env: Any = None  # built once the zone is known (from the running App)
        self._zoned = False
        self.background: set[asyncio.Task[Any]] = set()
        self.faq = ManagedFaq(settings.faq_dir, settings.faq_collection)
        self.refreshes: dict[str, dict[str, Any]] = {}  # source -> progress, for the poller

    def running(self) -> App:
        found = self._app()
        if found is None:
            raise RuntimeError("teambot is still starting")
        return found

    async def ready(self) -> bool:
        """teambot runs and someone can sign in."""
        if self._app() is None or await self.gate.accounts() is None:
            return False
        return not self.gate.problem

    def _templates(self) -> Any:
        found = self._app()
        if self._env is None or (self.clock is not None and found and not self._zoned):
            zone = self.settings.timezone or (
                found.settings.escalation.timezone if found else "UTC"
            )
            self.clock = Clock(zone)
            self._env, self._zoned = templates(self.clock, self.labels), found is not None
        return self._env

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("web_chat", self.web_chat)
        values.setdefault("nav", NAV)
        html = self._templates().get_template(name).render(prefix=PREFIX, **values)
        return HTMLResponse(html, status_code=status)

    def unavailable(self) -> HTMLResponse:
        return self.render("unavailable.html", status=503, problem=self.gate.problem)

    def forbidden(self, message: str) -> HTMLResponse:
        return self.render("error.html", status=403, message=message)

    def can_post(self, key: ThreadKey) -> bool:
        adapter = self.adapters.get(key.platform)
        return adapter is not None and adapter.reply_channel(key) is not None

    async def names(self, key: ThreadKey, asker: str) -> tuple[str, str]:
        """(chat name, asker's name) from the platform where it can tell (cached), else the ids."""
        directory: Directory | None = getattr(self.adapters.get(key.platform), "directory", None)
        if directory is None or not asker:
            return key.chat_id, asker
        chat = await directory.chat_name(key)
        person = await directory.user_name(key, asker)
        return chat or key.chat_id, person or asker

    def common(self, request: Request, who: SignedIn, active: str) -> dict[str, Any]:
        return {
            "user": who.agent,
            "role": who.role.value,
            "admin": who.admin,
            "csrf": who.csrf,
            "active": active,
            "notice": request.query_params.get("notice", ""),
            "error": request.query_params.get("error", ""),
        }


def get_console(request: Request) -> Console:
    """The console `mount_console` put on the server."""
    console = getattr(request.app.state, "console", None)
    if not isinstance(console, Console):
        raise RuntimeError("the console's routes run without a Console: use mount_console")
    return console


ConsoleDep = Annotated[Console, Depends(get_console)]


async def available(console: ConsoleDep) -> Console:
    """The console once teambot runs and someone can sign in, else the "not set up" page."""
    if not await console.ready():
        raise Refused(console.unavailable())
    return console


Available = Annotated[Console, Depends(available)]


def running(console: Available) -> App:
    return console.running()


Running = Annotated[App, Depends(running)]


async def accounts(console: Available) -> Accounts:
    found = await console.gate.accounts()
    if found is None:  # pragma: no cover - `available` saw them
        raise Refused(console.unavailable())
    return found


AccountsDep = Annotated[Accounts, Depends(accounts)]


async def signed_in(request: Request, console: Available) -> SignedIn:
    """The agent whose session cookie came with the request, else the way to sign in."""
    who = await console.gate.signed_in(request)
    if who is None:
        target = f"{PREFIX}/login?next={quote(request.url.path)}"
        raise Refused(RedirectResponse(target, status_code=303))
    return who


Agent = Annotated[SignedIn, Depends(signed_in)]


async def admin(who: Agent, console: ConsoleDep) -> SignedIn:
    if not who.admin:
        raise Refused(console.forbidden(ADMINS_ONLY))
    return who


Admin = Annotated[SignedIn, Depends(admin)]


@dataclass(frozen=True, slots=True)
class Post:
    """A form an agent sent, its CSRF token checked."""

    who: SignedIn
    fields: dict[str, str]


async def posted(request: Request, who: Agent, console: ConsoleDep) -> Post:
    fields = await form(request)
    if not who.csrf_ok(fields.get("csrf", "")):
        raise Refused(console.forbidden(CSRF_WRONG))
    return Post(who, fields)


Posted = Annotated[Post, Depends(posted)]


async def posted_by_admin(post: Posted, console: ConsoleDep) -> Post:
    """`posted`, then admins only (a wrong token is refused as such, whoever sent it)."""
    if not post.who.admin:
        raise Refused(console.forbidden(ADMINS_ONLY))
    return post


AdminPosted = Annotated[Post, Depends(posted_by_admin)]


async def same_origin(request: Request, console: ConsoleDep) -> None:
    """Every state-changing request comes from the console's own pages: its Origin (else its
    Referer) names this server or one of `[console] origins`. A request with neither (not a
    browser) still needs its CSRF token; one from elsewhere is refused before it is read."""
    if request.method not in _CHANGES:
        return
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer is None:
            return
        parts = urlsplit(referer)
        origin = f"{parts.scheme}://{parts.netloc}"
    if not _ours(origin, request, console.settings.origins):
        log.warning(
            "console: %s %s refused: sent from %r", request.method, request.url.path, origin
        )
        raise Refused(
            console.forbidden(
                f"此表单来自其他网站，已拒绝。 / This form was sent from another site ({origin}). "
                "Behind a proxy that changes the Host header, list the console's address in "
                "[console] origins."
            )
        )


def _ours(origin: str, request: Request, allowed: Sequence[str]) -> bool:
    if origin in {o.rstrip("/") for o in allowed}:
        return True
    host = request.headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc == host and origin != "null"


async def form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def back(path: str, notice: str = "", error: str = "") -> RedirectResponse:
    query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
    return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)


def local_path(where: str, default: str) -> str:
    return where if where.startswith("/") and not where.startswith("//") else default
