"""The web chat's page (GET /) and what it reads besides the answer stream: its welcome and a
thread's transcript.

The welcome offers example questions drawn from the knowledge base (FAQ rows first, whose
sections are questions) and says whether a language model answers at all. The transcript lets
an asker come back to a conversation by its link, a person's replies included.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from importlib.resources import files
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse

from adapters.markdown import to_html
from adapters.platform import Running
from adapters.web.convert import BAD_ID, NOT_YOURS, refused, thread_key, valid_id
from adapters.web.sessions import Sessions
from engine.messages import Outcome

log = logging.getLogger(__name__)

EXAMPLES = 4
_SAMPLED_CHUNKS = 400
_CACHE_SECONDS = 300.0
_QUESTION = re.compile(r"[?？]\s*$")


class Welcome:
    """Example questions from the knowledge base, re-drawn every few minutes."""

    def __init__(self) -> None:
        self._examples: list[str] = []
        self._at = float("-inf")

    async def examples(self, app: Running) -> list[str]:
        if time.monotonic() - self._at < _CACHE_SECONDS:
            return self._examples
        ids = list(app.knowledge.live.current.chunks)
        sample = random.sample(ids, min(len(ids), _SAMPLED_CHUNKS))
        passages = (await app.knowledge.store.get(sample)).values() if sample else []
        questions, titles = set(), set()
        for passage in passages:
            last = passage.section.split(" > ")[-1].strip()
            if _QUESTION.search(last) and len(last) <= 80:
                questions.add(last)
            elif passage.title and len(passage.title) <= 40:
                titles.add(passage.title)
        picked = random.sample(sorted(questions), min(len(questions), EXAMPLES))
        for title in sorted(titles):
            if len(picked) >= EXAMPLES:
                break
            picked.append(f"{title}?" if title.isascii() else f"{title}？")
        self._examples, self._at = picked, time.monotonic()
        return picked


def page_router(app: Callable[[], Running | None], sessions: Sessions) -> APIRouter:
    """GET / (the page), GET /api/welcome and GET /api/threads/{chat}/{thread} for it; a
    transcript only for the session that owns the chat (another browser: 403)."""
    router = APIRouter()
    welcome = Welcome()
    page = files("adapters.web").joinpath("static/chat.html").read_text(encoding="utf-8")

    @router.get("/", response_class=HTMLResponse)
    async def chat_page() -> str:
        return page

    @router.get("/api/welcome")
    async def welcome_page() -> JSONResponse:
        core = app()
        if core is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            examples = await welcome.examples(core)
        except Exception:  # the welcome is a nicety: never let it break the page
            log.exception("web chat: no example questions from the knowledge base")
            examples = []
        return JSONResponse({"examples": examples, "model": core.llm is not None})

    @router.get("/api/threads/{chat_id}/{thread_id}")
    async def transcript(request: Request, chat_id: str, thread_id: str) -> JSONResponse:
        core = app()
        if core is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        if not (valid_id(chat_id) and valid_id(thread_id)):
            return refused(BAD_ID, 400)
        session = await sessions.identify(request)
        owner = await sessions.owner(chat_id)
        if owner is None:  # nobody wrote here yet: nothing to show, nothing to hide
            return JSONResponse({"state": "new", "messages": []})
        if owner != session.hash:
            return refused(NOT_YOURS, 403)
        thread = await core.store.find_thread(thread_key(chat_id, thread_id))
        if thread is None:
            return JSONResponse({"state": "new", "messages": []})
        messages: list[dict[str, Any]] = []
        for turn in await core.store.history(thread.id, 200):
            messages.append({"role": "me", "text": turn.question})
            if turn.answer:
                messages.append(_bot(turn.answer, turn.outcome, turn.language, turn.id, turn))
        handoff = await core.store.handoffs.latest(thread.id)
        if handoff is not None and handoff.answer.strip():
            messages.append(
                {"role": "agent", "html": to_html(handoff.answer), "agent": handoff.taken_by}
            )
        return JSONResponse({"state": thread.state.value, "messages": messages})

    return router


def _bot(text: str, outcome: Outcome, language: str, turn_id: int, turn: Any) -> dict[str, Any]:
    return {
        "role": "bot",
        "answer": {
            "text": text,
            "html": to_html(text),
            "outcome": outcome.value,
            "language": language,
            "turn_id": turn_id,
            "citations": [
                {"number": c.number, "title": c.title, "location": c.location, "section": c.section}
                for c in turn.citations
            ],
            "timings": {"total": turn.timings.total},
        },
    }
