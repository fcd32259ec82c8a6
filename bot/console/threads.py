"""The console's thread pages: escalations waiting for a person (take, reply, resolve), the
conversations search, one thread's transcript, and the handoff figures."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.console.deps import PREFIX, Agent, ConsoleDep, Posted, Running, back, local_path
from engine import metrics
from engine.messages import Answer, Outcome
from engine.store.handoff_records import HandoffRecord
from engine.store.tables import ThreadState
from jobs.handoff import FIGURES_WINDOW

log = logging.getLogger(__name__)

router = APIRouter(prefix=PREFIX)


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


# -- escalations ------------------------------------------------------------------------------


@router.get("/escalations")
async def escalations(request: Request, who: Agent, console: ConsoleDep, core: Running) -> Response:
    now = datetime.now(UTC)
    rules = core.settings.escalation

    async def row(h: HandoffRecord) -> Row:
        sla = rules.for_chat(h.key.platform, h.key.chat_id).sla_minutes
        last = await core.store.history(h.thread_id, 1)
        asker = (last[-1].asker_name or last[-1].asker_id) if last else ""
        chat, asker = await console.names(h.key, asker)
        return Row(h, h.waiting_minutes(now), sla, console.can_post(h.key), asker, chat)

    handoffs = core.store.handoffs
    open_ = [await row(h) for h in await handoffs.listed(resolved=False)]
    resolved = [await row(h) for h in await handoffs.listed(resolved=True, limit=30)]
    return console.render(
        "escalations.html",
        **console.common(request, who, "escalations"),
        waiting=[r for r in open_ if r.handoff.state == ThreadState.ESCALATED],
        taken=[r for r in open_ if r.handoff.state == ThreadState.HUMAN],
        resolved=resolved,
    )


@router.post("/threads/{thread_id:int}/take")
async def take(thread_id: int, post: Posted, core: Running) -> Response:
    where = local_path(post.fields.get("back", ""), "/escalations")
    thread = await core.store.thread_by_id(thread_id)
    if thread is None:
        return back(where, error=f"no thread {thread_id}")
    if thread.state not in (ThreadState.ESCALATED, ThreadState.HUMAN):
        return back(where, error="该会话未在等待人工 / This thread is not waiting")
    await core.conversation.take(thread_id, post.who.agent)
    log.info("console: %s took thread %s", post.who.agent, thread.key)
    return back(where, notice="已接手 / Taken")


@router.post("/threads/{thread_id:int}/resolve")
async def resolve(thread_id: int, post: Posted, core: Running) -> Response:
    where = local_path(post.fields.get("back", ""), "/escalations")
    done = await core.conversation.resolve(thread_id, by=f"console:{post.who.agent}")
    if done is None:
        return back(where, notice="已是已解决 / Already resolved")
    log.info("console: %s resolved thread %s", post.who.agent, done.key)
    return back(where, notice="已解决 / Resolved")


@router.post("/threads/{thread_id:int}/reply")
async def reply(thread_id: int, post: Posted, console: ConsoleDep, core: Running) -> Response:
    text = post.fields.get("text", "").strip()
    where = local_path(post.fields.get("back", ""), "/escalations")
    if not text:
        return back(where, error="回复为空 / The reply is empty")
    thread = await core.store.thread_by_id(thread_id)
    if thread is None:
        return back(where, error=f"no thread {thread_id}")
    adapter = console.adapters.get(thread.key.platform)
    channel = adapter.reply_channel(thread.key, thread.chat_type) if adapter else None
    if channel is None:
        return back(
            where,
            error=(
                f"{thread.key.platform} 无法从控制台发消息到此会话，请在平台内回复。 / "
                f"{thread.key.platform} cannot post into this thread from the console: "
                "reply in the chat itself."
            ),
        )
    agent = post.who.agent
    try:
        await channel.finish(Answer(text=signature(agent, text), outcome=Outcome.HANDED_OFF))
    except Exception as error:  # show the agent what went wrong, keep the console up
        log.exception("console reply into %s failed", thread.key)
        return back(where, error=f"发送失败 / Sending failed: {error}")
    await core.conversation.human_replied(thread.key, agent, text)
    log.info("console: %s replied in thread %s", agent, thread.key)
    return back(where, notice="已发送 / Sent")


# -- conversations ----------------------------------------------------------------------------


@router.get("/conversations")
async def conversations(
    request: Request, who: Agent, console: ConsoleDep, core: Running
) -> Response:
    query = request.query_params.get("q", "")[:200]
    threads = await core.store.handoffs.search_threads(query, limit=100)
    names = {t.id: await console.names(t.key, t.asker) for t in threads}
    return console.render(
        "conversations.html",
        **console.common(request, who, "conversations"),
        query=query,
        threads=threads,
        names=names,
    )


@router.get("/threads/{thread_id:int}")
async def transcript(
    thread_id: int, request: Request, who: Agent, console: ConsoleDep, core: Running
) -> Response:
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
        attachments=await core.store.attachments.for_thread(thread_id, limit=50),
    )


# Served as themselves (thumbnails); anything else is downloaded, never rendered.
_SHOWN = {"image/png", "image/jpeg", "image/gif", "image/webp", "image/bmp"}


@router.get("/threads/{thread_id:int}/attachments/{attachment_id:int}")
async def attachment(
    thread_id: int, attachment_id: int, who: Agent, console: ConsoleDep, core: Running
) -> Response:
    """An attachment's bytes as the asker sent them (when small enough to be kept)."""
    found = await core.store.attachments.file(attachment_id)
    if found is None or found[0] != thread_id or found[1].data is None:
        message = "附件未保存 / this attachment was not kept (larger than [attachments] keep_mb)"
        return console.render("error.html", status=404, message=message)
    read = found[1]
    shown = read.mime in _SHOWN
    name = quote(read.name or "attachment")
    disposition = "inline" if shown else "attachment"
    headers = {
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{name}",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'",
        "Cache-Control": "private, no-store",
    }
    media = read.mime if shown else "application/octet-stream"
    return Response(content=read.data, media_type=media, headers=headers)


# -- dashboard --------------------------------------------------------------------------------


@router.get("/dashboard")
async def dashboard(request: Request, who: Agent, console: ConsoleDep, core: Running) -> Response:
    handoffs = core.store.handoffs
    now = datetime.now(UTC)
    week = await handoffs.figures(now - FIGURES_WINDOW, now)
    day = await handoffs.figures(now - timedelta(days=1), now)
    metrics.record_figures(week)
    windows = [
        ("最近 24 小时 / Last 24 hours", day),
        (f"最近 {FIGURES_WINDOW.days} 天 / Last {FIGURES_WINDOW.days} days", week),
    ]
    return console.render(
        "dashboard.html", **console.common(request, who, "dashboard"), windows=windows
    )
