"""The console's knowledge page: the FAQ candidates a person's answers left behind (approve, with
an edited answer if need be, or reject; approved ones go to the managed FAQ and are indexed at
once) and each source's state, with a Run now button for admins."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import Response

from bot.console.deps import PREFIX, AdminPosted, Agent, ConsoleDep, Posted, Running, back
from engine import metrics
from engine.store.tables import CandidateStatus
from jobs.refresh import refresh_source

router = APIRouter(prefix=PREFIX)


@router.get("/knowledge")
async def knowledge(request: Request, who: Agent, console: ConsoleDep, core: Running) -> Response:
    handoffs = core.store.handoffs
    return console.render(
        "knowledge.html",
        **console.common(request, who, "knowledge"),
        sources=await core.knowledge.statuses(),
        pending=await handoffs.candidates(CandidateStatus.PENDING),
        decided=[
            c for c in await handoffs.candidates(limit=50)
            if c.status is not CandidateStatus.PENDING
        ],
        faq_path=str(console.faq.path),
        faq_rows=len(await asyncio.to_thread(console.faq.rows)),
    )  # fmt: skip


@router.post("/knowledge/candidates/{candidate_id:int}/{decision:str}")
async def decide(
    candidate_id: int, decision: str, post: Posted, console: ConsoleDep, core: Running
) -> Response:
    if decision not in ("approve", "reject"):
        return console.render("error.html", status=404, message=f"unknown decision {decision!r}")
    approve = decision == "approve"
    status = CandidateStatus.APPROVED if approve else CandidateStatus.REJECTED
    decided = await core.store.handoffs.decide_candidate(
        candidate_id, status, post.who.agent, answer=post.fields.get("answer")
    )
    if decided is None:
        return back("/knowledge", error="已处理过 / Already decided")
    metrics.FAQ_CANDIDATES.labels(status.value).inc()
    if not approve:
        return back("/knowledge", notice="已拒绝 / Rejected")
    faq = console.faq
    await faq.append(decided.question, decided.answer)
    report = await faq.refresh(core.knowledge)
    if report is None:
        return back("/knowledge", error=f"写入 {faq.path}，索引失败 / written, indexing failed")
    return back("/knowledge", notice=f"已批准并索引 / Approved and indexed: {report.summary()}")


@router.post("/knowledge/sources/{name:str}/refresh")
async def run_now(name: str, post: AdminPosted, console: ConsoleDep, core: Running) -> Response:
    """Admins only, as on the Sources page: a refresh re-reads and re-embeds a whole source."""
    kb = core.knowledge
    if name not in {s.name for s in kb.sources}:
        return back("/knowledge", error=f"unknown source {name}")
    task = asyncio.create_task(refresh_source(kb, name))
    console.background.add(task)
    task.add_done_callback(console.background.discard)
    return back("/knowledge", notice=f"刷新已开始 / Refresh of {name} started")
