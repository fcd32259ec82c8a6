"""The console's pages and form actions (server-rendered; every POST carries the CSRF token).

`Console` holds what every page needs (the running App, the sign-in gate, the templates);
`console_router` mounts the pages. A new page module (e.g. a knowledge page) adds its routes
with `console.page(...)` / `console.action(...)` and a `NAV` entry.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from adapters.base import Adapter
from adapters.names import Directory
from bot.console.accounts import AccountError, Role, SignedIn
from bot.console.auth import COOKIE, Gate
from bot.console.config import ConsoleSettings
from bot.console.present import Clock, templates
from engine import metrics
from engine.handoffs import HandoffRecord
from engine.messages import Answer, Outcome, ThreadKey
from engine.tables import CandidateStatus, ThreadState
from jobs.faq import ManagedFaq
from jobs.handoff import FIGURES_WINDOW
from jobs.refresh import refresh_source

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

PREFIX = "/console"
# The navigation bar: (page id, path, label). A page module appends its own entry.
NAV: list[tuple[str, str, str]] = [
    ("escalations", "/escalations", "升级 Escalations"),
    ("conversations", "/conversations", "会话 Conversations"),
    ("knowledge", "/knowledge", "知识 Knowledge"),
    ("sources", "/sources", "知识库 Sources"),
    ("dashboard", "/dashboard", "数据 Dashboard"),
]

Page = Callable[[Request, SignedIn], Awaitable[Response]]
Action = Callable[[Request, SignedIn, dict[str, str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class Row:
    """One escalation as the Escalations page shows it."""

    handoff: HandoffRecord
    waited_minutes: float
    sla_minutes: float
    can_post: bool
    asker: str = ""
    chat: str = ""

    @property
    def over_sla(self) -> bool:
        return self.handoff.responded_at is None and self.waited_minutes > self.sla_minutes


def signature(agent: str, text: str) -> str:
    """An agent's reply as it reaches the chat: their name first, so the asker knows who."""
    return f"**{agent}** · 人工客服 / support\n\n{text}"


class Console:
    """What every console page needs; `app` returns the running App (None while starting)."""

    def __init__(
        self,
        settings: ConsoleSettings,
        app: Callable[[], App | None],
        adapters: Sequence[Adapter],
        *,
        web_chat: bool = True,
    ) -> None:
        self.settings = settings
        self._app = app
        self.adapters = {adapter.name: adapter for adapter in adapters}
        self.web_chat = web_chat
        self.gate = Gate(settings, lambda: found.store.engine if (found := app()) else None)
        self.clock: Clock | None = None
        self._env: Any = None  # built once the zone is known (from the running App)
        self._zoned = False
        self.background: set[asyncio.Task[Any]] = set()

    def running(self) -> App:
        found = self._app()
        if found is None:
            raise RuntimeError("teambot is still starting")
        return found

    def _templates(self) -> Any:
        found = self._app()
        if self._env is None or (self.clock is not None and found and not self._zoned):
            zone = self.settings.timezone or (
                found.settings.escalation.timezone if found else "UTC"
            )
            self.clock = Clock(zone)
            self._env, self._zoned = templates(self.clock), found is not None
        return self._env

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("web_chat", self.web_chat)
        values.setdefault("nav", NAV)
        html = self._templates().get_template(name).render(prefix=PREFIX, **values)
        return HTMLResponse(html, status_code=status)

    def unavailable(self) -> HTMLResponse:
        return self.render("unavailable.html", status=503, problem=self.gate.problem)

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

    async def _who(self, request: Request) -> SignedIn | Response:
        if self._app() is None or await self.gate.accounts() is None or self.gate.problem:
            return self.unavailable()
        who = await self.gate.signed_in(request)
        if who is None:
            target = f"{PREFIX}/login?next={quote(request.url.path)}"
            return RedirectResponse(target, status_code=303)
        return who

    def page(
        self, handler: Page, *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            who = await self._who(request)
            if isinstance(who, Response):
                return who
            if admin and not who.admin:
                return self.render("error.html", status=403, message="仅管理员 / Admins only")
            return await handler(request, who)

        return guarded

    def action(
        self, handler: Action, *, admin: bool = False
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            who = await self._who(request)
            if isinstance(who, Response):
                return who
            fields = await form(request)
            if not who.csrf_ok(fields.get("csrf", "")):
                return self.render("error.html", status=403, message="CSRF token missing or wrong")
            if admin and not who.admin:
                return self.render("error.html", status=403, message="仅管理员 / Admins only")
            return await handler(request, who, fields)

        return guarded


async def form(request: Request) -> dict[str, str]:
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


def back(path: str, notice: str = "", error: str = "") -> RedirectResponse:
    query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
    return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)


def _local_path(where: str, default: str) -> str:
    return where if where.startswith("/") and not where.startswith("//") else default


def console_router(
    settings: ConsoleSettings,
    app: Callable[[], App | None],
    adapters: Sequence[Adapter],
    *,
    web_chat: bool = True,
) -> APIRouter:
    """The /console routes."""
    console = Console(settings, app, adapters, web_chat=web_chat)
    router = APIRouter(prefix=PREFIX)
    _sign_in_routes(router, console)
    _escalation_routes(router, console)
    _conversation_routes(router, console)
    _dashboard_routes(router, console)
    _knowledge_routes(router, console)
    _agent_routes(router, console)
    from bot.console.knowledge import sources_routes  # imports this module's Console

    sources_routes(router, console)
    return router


# -- sign in, sign out, password --------------------------------------------------------------


def _sign_in_routes(router: APIRouter, console: Console) -> None:
    settings = console.settings

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        if console._app() is None or await console.gate.accounts() is None or console.gate.problem:
            return console.unavailable()
        return console.render(
            "login.html",
            next=request.query_params.get("next", PREFIX),
            error="",
            notice=request.query_params.get("notice", ""),
        )

    @router.post("/login")
    async def login(request: Request) -> Response:
        if console._app() is None or await console.gate.accounts() is None or console.gate.problem:
            return console.unavailable()
        fields = await form(request)
        name = fields.get("name", "").strip()[:64]
        target = fields.get("next", "") or PREFIX
        if not target.startswith(PREFIX) or target.startswith("//"):
            target = PREFIX  # never redirect off the console
        result = await console.gate.login(request, name, fields.get("password", ""))
        if result.lockout is not None:
            lock = result.lockout
            who = "所有登录 / all logins" if lock.everyone else "此地址 / this address"
            error = (
                f"登录失败次数过多，{who}已锁定，请 {lock.minutes} 分钟后再试。 / "
                f"Too many failed logins: locked for {lock.minutes} min."
            )
            refused = console.render(
                "login.html", status=429, next=target, error=error, notice="", locked=True
            )
            refused.headers["Retry-After"] = str(int(lock.seconds) + 1)
            return refused
        if result.agent is None:
            error = "名字或密码不对 / Wrong name or password"
            return console.render("login.html", status=401, next=target, error=error, notice="")
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            result.token,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return response

    async def logout(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        accounts = await console.gate.accounts()
        if accounts is not None:
            await accounts.end(who)  # the cookie stops working everywhere, not just here
        response = back("/login", notice="已退出 / Signed out")
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    async def password_page(request: Request, who: SignedIn) -> Response:
        return console.render("password.html", **console.common(request, who, "password"))

    async def change_password(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        accounts = await console.gate.accounts()
        assert accounts is not None
        if await accounts.verify(who.agent, fields.get("current", "")) is None:
            return back("/password", error="当前密码不对 / The current password is wrong")
        if fields.get("new", "") != fields.get("again", ""):
            return back("/password", error="两次输入不一致 / The two new passwords differ")
        try:
            ended = await accounts.set_password(who.agent, fields.get("new", ""))
        except AccountError as error:
            return back("/password", error=str(error))
        log.info("console: %s changed their password; %d session(s) ended", who.agent, ended)
        response = back("/login", notice="密码已更改，请重新登录 / Password changed: sign in again")
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    router.add_api_route("/logout", console.action(logout), methods=["POST"])
    router.add_api_route("/password", console.page(password_page), methods=["GET"])
    router.add_api_route("/password", console.action(change_password), methods=["POST"])

    @router.get("")
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/escalations", status_code=303)


# -- escalations ------------------------------------------------------------------------------


def _escalation_routes(router: APIRouter, console: Console) -> None:
    async def escalations(request: Request, who: SignedIn) -> Response:
        core = console.running()
        now = datetime.now(UTC)
        rules = core.settings.escalation

        async def row(h: HandoffRecord) -> Row:
            sla = rules.for_chat(h.key.platform, h.key.chat_id).sla_minutes
            last = await core.store.history(h.thread_id, 1)
            asker = (last[-1].asker_name or last[-1].asker_id) if last else ""
            chat, asker = await console.names(h.key, asker)
            return Row(h, h.waiting_minutes(now), sla, console.can_post(h.key), asker, chat)

        open_ = [await row(h) for h in await core.store.handoffs.listed(resolved=False)]
        resolved = [await row(h) for h in await core.store.handoffs.listed(resolved=True, limit=30)]
        return console.render(
            "escalations.html",
            **console.common(request, who, "escalations"),
            waiting=[r for r in open_ if r.handoff.state == ThreadState.ESCALATED],
            taken=[r for r in open_ if r.handoff.state == ThreadState.HUMAN],
            resolved=resolved,
        )

    router.add_api_route("/escalations", console.page(escalations), methods=["GET"])

    async def take(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        where = _local_path(fields.get("back", ""), "/escalations")
        core = console.running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return back(where, error=f"no thread {thread_id}")
        if thread.state not in (ThreadState.ESCALATED, ThreadState.HUMAN):
            return back(where, error="该会话未在等待人工 / This thread is not waiting")
        await core.conversation.take(thread_id, who.agent)
        log.info("console: %s took thread %s", who.agent, thread.key)
        return back(where, notice="已接手 / Taken")

    async def resolve(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        where = _local_path(fields.get("back", ""), "/escalations")
        done = await console.running().conversation.resolve(thread_id, by=f"console:{who.agent}")
        if done is None:
            return back(where, notice="已是已解决 / Already resolved")
        log.info("console: %s resolved thread %s", who.agent, done.key)
        return back(where, notice="已解决 / Resolved")

    async def reply(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        text = fields.get("text", "").strip()
        where = _local_path(fields.get("back", ""), "/escalations")
        if not text:
            return back(where, error="回复为空 / The reply is empty")
        core = console.running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return back(where, error=f"no thread {thread_id}")
        adapter = console.adapters.get(thread.key.platform)
        channel = adapter.reply_channel(thread.key) if adapter is not None else None
        if channel is None:
            return back(
                where,
                error=(
                    f"{thread.key.platform} 无法从控制台发消息到此会话，请在平台内回复。 / "
                    f"{thread.key.platform} cannot post into this thread from the console: "
                    "reply in the chat itself."
                ),
            )
        try:
            await channel.finish(
                Answer(text=signature(who.agent, text), outcome=Outcome.HANDED_OFF)
            )
        except Exception as error:  # show the agent what went wrong, keep the console up
            log.exception("console reply into %s failed", thread.key)
            return back(where, error=f"发送失败 / Sending failed: {error}")
        await core.conversation.human_replied(thread.key, who.agent, text)
        log.info("console: %s replied in thread %s", who.agent, thread.key)
        return back(where, notice="已发送 / Sent")

    router.add_api_route("/threads/{thread_id:int}/take", console.action(take), methods=["POST"])
    router.add_api_route(
        "/threads/{thread_id:int}/resolve", console.action(resolve), methods=["POST"]
    )
    router.add_api_route("/threads/{thread_id:int}/reply", console.action(reply), methods=["POST"])


# -- conversations ----------------------------------------------------------------------------


def _conversation_routes(router: APIRouter, console: Console) -> None:
    async def conversations(request: Request, who: SignedIn) -> Response:
        query = request.query_params.get("q", "")[:200]
        threads = await console.running().store.handoffs.search_threads(query, limit=100)
        names = {t.id: await console.names(t.key, t.asker) for t in threads}
        return console.render(
            "conversations.html",
            **console.common(request, who, "conversations"),
            query=query,
            threads=threads,
            names=names,
        )

    async def transcript(request: Request, who: SignedIn) -> Response:
        thread_id = int(request.path_params["thread_id"])
        core = console.running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return console.render("error.html", status=404, message=f"no thread {thread_id}")
        turns = await core.store.history(thread_id, 500)
        feedback = await core.store.handoffs.feedback_for([t.id for t in turns])
        first = (turns[0].asker_name or turns[0].asker_id) if turns else ""
        chat, asker = await console.names(thread.key, first)
        return console.render(
            "thread.html",
            chat=chat,
            asker=asker,
            **console.common(request, who, "conversations"),
            thread=thread,
            turns=turns,
            feedback=feedback,
            handoff=await core.store.handoffs.latest(thread_id),
            can_post=console.can_post(thread.key),
        )

    router.add_api_route("/conversations", console.page(conversations), methods=["GET"])
    router.add_api_route("/threads/{thread_id:int}", console.page(transcript), methods=["GET"])


# -- dashboard --------------------------------------------------------------------------------


def _dashboard_routes(router: APIRouter, console: Console) -> None:
    async def dashboard(request: Request, who: SignedIn) -> Response:
        store = console.running().store
        now = datetime.now(UTC)
        week = await store.handoffs.figures(now - FIGURES_WINDOW, now)
        day = await store.handoffs.figures(now - timedelta(days=1), now)
        metrics.record_figures(week)
        windows = [
            ("最近 24 小时 / Last 24 hours", day),
            (f"最近 {FIGURES_WINDOW.days} 天 / Last {FIGURES_WINDOW.days} days", week),
        ]
        return console.render(
            "dashboard.html", **console.common(request, who, "dashboard"), windows=windows
        )

    router.add_api_route("/dashboard", console.page(dashboard), methods=["GET"])


# -- knowledge --------------------------------------------------------------------------------


def _knowledge_routes(router: APIRouter, console: Console) -> None:
    settings = console.settings
    faq = ManagedFaq(settings.faq_dir, settings.faq_collection)

    async def knowledge(request: Request, who: SignedIn) -> Response:
        core = console.running()
        return console.render(
            "knowledge.html",
            **console.common(request, who, "knowledge"),
            sources=await core.knowledge.statuses(),
            pending=await core.store.handoffs.candidates(CandidateStatus.PENDING),
            decided=[
                c for c in await core.store.handoffs.candidates(limit=50)
                if c.status is not CandidateStatus.PENDING
            ],
            faq_path=str(faq.path),
            faq_rows=len(await asyncio.to_thread(faq.rows)),
        )  # fmt: skip

    async def decide(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        candidate_id = int(request.path_params["candidate_id"])
        decision = request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return console.render(
                "error.html", status=404, message=f"unknown decision {decision!r}"
            )
        approve = decision == "approve"
        core = console.running()
        status = CandidateStatus.APPROVED if approve else CandidateStatus.REJECTED
        decided = await core.store.handoffs.decide_candidate(
            candidate_id, status, who.agent, answer=fields.get("answer")
        )
        if decided is None:
            return back("/knowledge", error="已处理过 / Already decided")
        metrics.FAQ_CANDIDATES.labels(status.value).inc()
        if not approve:
            return back("/knowledge", notice="已拒绝 / Rejected")
        await faq.append(decided.question, decided.answer)
        report = await faq.refresh(core.knowledge)
        if report is None:
            return back("/knowledge", error=f"写入 {faq.path}，索引失败 / written, indexing failed")
        return back("/knowledge", notice=f"已批准并索引 / Approved and indexed: {report.summary()}")

    async def run_now(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        name = request.path_params["name"]
        kb = console.running().knowledge
        if name not in {s.name for s in kb.sources}:
            return back("/knowledge", error=f"unknown source {name}")
        task = asyncio.create_task(refresh_source(kb, name))
        console.background.add(task)
        task.add_done_callback(console.background.discard)
        return back("/knowledge", notice=f"刷新已开始 / Refresh of {name} started")

    router.add_api_route("/knowledge", console.page(knowledge), methods=["GET"])
    router.add_api_route(
        "/knowledge/candidates/{candidate_id:int}/{decision:str}",
        console.action(decide),
        methods=["POST"],
    )
    router.add_api_route(
        "/knowledge/sources/{name:str}/refresh", console.action(run_now), methods=["POST"]
    )


# -- agents (admins) --------------------------------------------------------------------------


def _agent_routes(router: APIRouter, console: Console) -> None:
    async def agents(request: Request, who: SignedIn) -> Response:
        accounts = await console.gate.accounts()
        assert accounts is not None
        return console.render(
            "agents.html", **console.common(request, who, "agents"), agents=await accounts.agents()
        )

    async def add(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        accounts = await console.gate.accounts()
        assert accounts is not None
        role = Role.ADMIN if fields.get("role") == "admin" else Role.AGENT
        try:
            added = await accounts.add(fields.get("name", ""), fields.get("password", ""), role)
        except AccountError as error:
            return back("/agents", error=str(error))
        log.info("console: %s added agent %s (%s)", who.agent, added.name, added.role.value)
        return back("/agents", notice=f"已添加 / Added: {added.name}")

    async def remove(request: Request, who: SignedIn, fields: dict[str, str]) -> Response:
        accounts = await console.gate.accounts()
        assert accounts is not None
        name = request.path_params["name"]
        if name == who.agent:
            return back("/agents", error="不能删除自己 / You cannot remove yourself")
        try:
            await accounts.remove(name)
        except AccountError as error:
            return back("/agents", error=str(error))
        log.info("console: %s removed agent %s", who.agent, name)
        return back("/agents", notice=f"已删除 / Removed: {name}")

    router.add_api_route("/agents", console.page(agents, admin=True), methods=["GET"])
    router.add_api_route("/agents", console.action(add, admin=True), methods=["POST"])
    router.add_api_route(
        "/agents/{name}/remove", console.action(remove, admin=True), methods=["POST"]
    )
