"""What the web chat posts into a thread outside a page's own request: a person's reply, an
apology, a late answer — as the thread's open pages receive it (`PageChannel`, `answer_late`)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from adapters.markdown import to_html
from adapters.web.convert import answer_to_json
from engine.messages import Answer, Outcome, ThreadKey


class Answering(Protocol):
    """The channel of a page's own request (adapters/web/adapter.py's `WebReplyChannel`): its
    final answer once the core finished it."""

    @property
    def final(self) -> Answer | None: ...


Send = Callable[[ThreadKey, dict[str, Any]], Awaitable[int]]
_SENDING: set[asyncio.Future[int]] = set()


def page_event(answer: Answer) -> dict[str, Any]:
    """A message posted into a web thread unprompted: a person's reply from the console
    ("agent"), or the bot's own ("bot": an apology for a question a crash left unanswered)."""
    if answer.outcome is Outcome.HANDED_OFF:
        return {"type": "agent", "text": answer.text, "html": to_html(answer.text)}
    return {"type": "bot", "answer": answer_to_json(answer)}


def answer_late(
    send: Send, key: ThreadKey, task: asyncio.Task[Answer | None], channel: Answering
) -> None:
    """The page that asked went away before its answer ended (a reload, a dropped connection,
    a proxy that cut the stream): when the answer ends, it goes to the thread's open pages on
    every replica instead (the asker's page listens again: adapters/web/static/chat.html)."""

    def ended(finished: asyncio.Task[Answer | None]) -> None:
        if finished.cancelled() or channel.final is None:
            return
        event = {"type": "bot", "late": True, "answer": answer_to_json(channel.final)}
        sending = asyncio.ensure_future(send(key, event))
        _SENDING.add(sending)
        sending.add_done_callback(_SENDING.discard)

    task.add_done_callback(ended)
