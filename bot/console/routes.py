"""The console's pages and form actions (server-rendered; every POST carries the CSRF token)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape

from adapters.base import Adapter
from bot.console.auth import COOKIE, Session, Signer
from bot.console.config import ConsoleSettings
from engine import metrics
from engine.handoffs import HandoffRecord
from engine.messages import Answer, Outcome
from engine.tables import CandidateStatus, ThreadState
from jobs.faq import ManagedFaq
from jobs.handoff import FIGURES_WINDOW
from jobs.refresh import refresh_source

if TYPE_CHECKING:
    from bot.app import App

log = logging.getLogger(__name__)

PREFIX = "/console"
_templates = Environment(
    loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
    autoescape=select_autoescape(["html"]),
)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


_templates.filters["duration"] = _minutes
_templates.filters["percent"] = _percent
_templates.filters["when"] = lambda d: (
    d.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if d else "—"
)


@dataclass(frozen=True, slots=True)
class Row:
    """One escalation as the Escalations page shows it."""

    handoff: HandoffRecord
    waited_minutes: float
    sla_minutes: float
    can_post: bool

    @property
    def over_sla(self) -> bool:
        return self.waited_minutes > self.sla_minutes


def console_router(
    settings: ConsoleSettings,
    app: Callable[[], App | None],
    adapters: Sequence[Adapter],
    *,
    web_chat: bool = True,
) -> APIRouter:
    """The /console routes; `app` returns the running App (None while the server starts)."""
    router = APIRouter(prefix=PREFIX)
    password = settings.password.get_secret_value() if settings.password else ""
    signer = Signer(password) if password else None
    by_name = {adapter.name: adapter for adapter in adapters}
    faq = ManagedFaq(settings.faq_dir, settings.faq_collection)
    background: set[asyncio.Task[Any]] = set()

    def render(name: str, status: int = 200, **values: Any) -> HTMLResponse:
        values.setdefault("web_chat", web_chat)
        html = _templates.get_template(name).render(prefix=PREFIX, **values)
        return HTMLResponse(html, status_code=status)

    def unavailable() -> HTMLResponse:
        return render("unavailable.html", status=503)

    def running() -> App:
        found = app()
        if found is None:
            raise RuntimeError("teambot is still starting")
        return found

    async def form(request: Request) -> dict[str, str]:
        body = (await request.body()).decode("utf-8", errors="replace")
        return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}

    def session_of(request: Request) -> Session | None:
        return signer.read(request.cookies.get(COOKIE)) if signer else None

    def to_login(request: Request) -> Response:
        return RedirectResponse(f"{PREFIX}/login?next={quote(request.url.path)}", status_code=303)

    def page(
        handler: Callable[[Request, Session], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if signer is None:
                return unavailable()
            session = session_of(request)
            if session is None:
                return to_login(request)
            return await handler(request, session)

        return guarded

    def action(
        handler: Callable[[Request, Session, dict[str, str]], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def guarded(request: Request) -> Response:
            if signer is None:
                return unavailable()
            session = session_of(request)
            if session is None:
                return to_login(request)
            fields = await form(request)
            if not signer.csrf_ok(session, fields.get("csrf", "")):
                return render("error.html", status=403, message="CSRF token missing or wrong")
            return await handler(request, session, fields)

        return guarded

    def back(path: str, notice: str = "", error: str = "") -> RedirectResponse:
        query = f"?notice={quote(notice)}" if notice else f"?error={quote(error)}" if error else ""
        return RedirectResponse(f"{PREFIX}{path}{query}", status_code=303)

    def common(request: Request, session: Session, active: str) -> dict[str, Any]:
        assert signer is not None
        return {
            "user": session.user,
            "csrf": signer.csrf(session),
            "active": active,
            "notice": request.query_params.get("notice", ""),
            "error": request.query_params.get("error", ""),
        }

    # -- login ----------------------------------------------------------------------------

    @router.get("/login", response_class=HTMLResponse)
    async def login_page(request: Request) -> Response:
        if signer is None:
            return unavailable()
        return render("login.html", next=request.query_params.get("next", PREFIX), error="")

    @router.post("/login")
    async def login(request: Request) -> Response:
        if signer is None:
            return unavailable()
        fields = await form(request)
        name = fields.get("name", "").strip()[:64]
        target = fields.get("next", "") or PREFIX
        if not target.startswith(PREFIX):
            target = PREFIX  # never redirect off the console
        if not name or not signer.password_ok(fields.get("password", "")):
            await asyncio.sleep(0.5)  # slows down guessing
            error = "名字或密码不对 / Wrong name or password"
            return render("login.html", status=401, next=target, error=error)
        cookie, _ = signer.issue(name, settings.session_hours)
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            cookie,
            max_age=int(settings.session_hours * 3600),
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
            path=PREFIX,
        )
        return response

    async def logout(request: Request, session: Session, fields: dict[str, str]) -> Response:
        response = RedirectResponse(f"{PREFIX}/login", status_code=303)
        response.delete_cookie(COOKIE, path=PREFIX)
        return response

    router.add_api_route("/logout", action(logout), methods=["POST"])

    @router.get("")
    async def home() -> Response:
        return RedirectResponse(f"{PREFIX}/escalations", status_code=303)

    # -- escalations ----------------------------------------------------------------------

    async def escalations(request: Request, session: Session) -> Response:
        core = running()
        now = datetime.now(UTC)
        rules = core.settings.escalation

        def row(h: HandoffRecord) -> Row:
            adapter = by_name.get(h.key.platform)
            can_post = adapter is not None and adapter.reply_channel(h.key) is not None
            sla = rules.for_chat(h.key.platform, h.key.chat_id).sla_minutes
            return Row(h, h.waiting_minutes(now), sla, can_post)

        open_ = [row(h) for h in await core.store.handoffs(resolved=False)]
        resolved = [row(h) for h in await core.store.handoffs(resolved=True, limit=30)]
        return render(
            "escalations.html",
            **common(request, session, "escalations"),
            waiting=[r for r in open_ if r.handoff.state == ThreadState.ESCALATED],
            taken=[r for r in open_ if r.handoff.state == ThreadState.HUMAN],
            resolved=resolved,
        )

    router.add_api_route("/escalations", page(escalations), methods=["GET"])

    async def take(request: Request, session: Session, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        core = running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return back("/escalations", error=f"no thread {thread_id}")
        if thread.state not in (ThreadState.ESCALATED, ThreadState.HUMAN):
            return back("/escalations", error="该会话未在等待人工 / This thread is not waiting")
        await core.conversation.take(thread_id, session.user)
        return back("/escalations", notice=f"已接手 / Taken: {thread.key}")

    async def resolve(request: Request, session: Session, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        done = await running().conversation.resolve(thread_id, by=f"console:{session.user}")
        if done is None:
            return back("/escalations", notice="已是已解决 / Already resolved")
        return back("/escalations", notice=f"已解决 / Resolved: {done.key}")

    async def reply(request: Request, session: Session, fields: dict[str, str]) -> Response:
        thread_id = int(request.path_params["thread_id"])
        text = fields.get("text", "").strip()
        where = fields.get("back", "/escalations")
        where = where if where.startswith("/") and not where.startswith("//") else "/escalations"
        if not text:
            return back(where, error="回复为空 / The reply is empty")
        core = running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return back(where, error=f"no thread {thread_id}")
        adapter = by_name.get(thread.key.platform)
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
            await channel.finish(Answer(text=text, outcome=Outcome.HANDED_OFF))
        except Exception as error:  # show the agent what went wrong, keep the console up
            log.exception("console reply into %s failed", thread.key)
            return back(where, error=f"发送失败 / Sending failed: {error}")
        await core.conversation.human_replied(thread.key, session.user, text)
        return back(where, notice=f"已发送 / Sent into {thread.key}")

    router.add_api_route("/threads/{thread_id:int}/take", action(take), methods=["POST"])
    router.add_api_route("/threads/{thread_id:int}/resolve", action(resolve), methods=["POST"])
    router.add_api_route("/threads/{thread_id:int}/reply", action(reply), methods=["POST"])

    # -- conversations --------------------------------------------------------------------

    async def conversations(request: Request, session: Session) -> Response:
        query = request.query_params.get("q", "")[:200]
        threads = await running().store.search_threads(query, limit=100)
        return render(
            "conversations.html",
            **common(request, session, "conversations"),
            query=query,
            threads=threads,
        )

    async def transcript(request: Request, session: Session) -> Response:
        thread_id = int(request.path_params["thread_id"])
        core = running()
        thread = await core.store.thread_by_id(thread_id)
        if thread is None:
            return render("error.html", status=404, message=f"no thread {thread_id}")
        turns = await core.store.history(thread_id, 500)
        feedback = await core.store.feedback_for([t.id for t in turns])
        adapter = by_name.get(thread.key.platform)
        return render(
            "thread.html",
            **common(request, session, "conversations"),
            thread=thread,
            turns=turns,
            feedback=feedback,
            handoff=await core.store.handoff(thread_id),
            can_post=adapter is not None and adapter.reply_channel(thread.key) is not None,
        )

    router.add_api_route("/conversations", page(conversations), methods=["GET"])
    router.add_api_route("/threads/{thread_id:int}", page(transcript), methods=["GET"])

    # -- dashboard ------------------------------------------------------------------------

    async def dashboard(request: Request, session: Session) -> Response:
        store = running().store
        now = datetime.now(UTC)
        week = await store.figures(now - FIGURES_WINDOW, now)
        day = await store.figures(now - timedelta(days=1), now)
        metrics.record_figures(week)
        return render(
            "dashboard.html", **common(request, session, "dashboard"), windows=[day, week]
        )

    router.add_api_route("/dashboard", page(dashboard), methods=["GET"])

    # -- knowledge ------------------------------------------------------------------------

    async def knowledge(request: Request, session: Session) -> Response:
        core = running()
        return render(
            "knowledge.html",
            **common(request, session, "knowledge"),
            sources=await core.knowledge.statuses(),
            pending=await core.store.candidates(CandidateStatus.PENDING),
            decided=[
                c for c in await core.store.candidates(limit=50)
                if c.status is not CandidateStatus.PENDING
            ],
            faq_path=str(faq.path),
            faq_rows=len(await asyncio.to_thread(faq.rows)),
        )  # fmt: skip

    async def decide(request: Request, session: Session, fields: dict[str, str]) -> Response:
        candidate_id = int(request.path_params["candidate_id"])
        decision = request.path_params["decision"]
        if decision not in ("approve", "reject"):
            return render("error.html", status=404, message=f"unknown decision {decision!r}")
        approve = decision == "approve"
        core = running()
        status = CandidateStatus.APPROVED if approve else CandidateStatus.REJECTED
        decided = await core.store.decide_candidate(
            candidate_id, status, session.user, answer=fields.get("answer")
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

    async def run_now(request: Request, session: Session, fields: dict[str, str]) -> Response:
        name = request.path_params["name"]
        kb = running().knowledge
        if name not in {s.name for s in kb.sources}:
            return back("/knowledge", error=f"unknown source {name}")
        task = asyncio.create_task(refresh_source(kb, name))
        background.add(task)
        task.add_done_callback(background.discard)
        return back("/knowledge", notice=f"刷新已开始 / Refresh of {name} started")

    router.add_api_route("/knowledge", page(knowledge), methods=["GET"])
    router.add_api_route(
        "/knowledge/candidates/{candidate_id:int}/{decision:str}", action(decide), methods=["POST"]
    )
    router.add_api_route("/knowledge/sources/{name:str}/refresh", action(run_now), methods=["POST"])
    return router
