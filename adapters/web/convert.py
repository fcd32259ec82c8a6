"""Pure conversions for the built-in web chat: request -> Inbound, Answer -> JSON."""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from adapters.markdown import to_html
from engine.catalog import both
from engine.messages import Answer, Attachment, ChatType, Inbound, Sender, ThreadKey

PLATFORM = "web"
TENANT = "local"
ID = r"^[A-Za-z0-9_.:-]+$"  # ASCII: the page's ids are hex; nothing that looks like another
_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")

# What a browser is told when it is refused (the page shows it; the status says which)
BAD_ID = both("web_bad_id")
NOT_YOURS = both("web_not_yours")
NO_TURN = both("web_no_turn")
NOTHING_ASKED = both("web_nothing_asked")
TOO_MANY_ESCALATIONS = both("web_too_many_escalations")


class ChatRequest(BaseModel):
    """One message typed into the web chat."""

    chat_id: str = Field(min_length=1, max_length=100, pattern=ID)
    thread_id: str = Field(min_length=1, max_length=100, pattern=ID)
    message_id: str = Field(min_length=1, max_length=100, pattern=ID)
    text: str = Field(max_length=100_000)
    sender_name: str = Field(default="", max_length=100)


class EscalateRequest(BaseModel):
    """A "Talk to a person" click in the web chat."""

    chat_id: str = Field(min_length=1, max_length=100, pattern=ID)
    thread_id: str = Field(min_length=1, max_length=100, pattern=ID)
    language: str = Field(default="en", pattern=r"^(en|zh)$")


class FeedbackRequest(BaseModel):
    """A "Helpful" click on an answer in the web chat."""

    turn_id: int = Field(ge=1, lt=2**63)
    chat_id: str = Field(min_length=1, max_length=100, pattern=ID)
    value: str = Field(pattern=r"^(up|down)$")


def valid_id(value: str) -> bool:
    """A chat, thread or message id as the page makes them (letters, digits, `_.:-`)."""
    return bool(_ID.match(value))


def thread_key(chat_id: str, thread_id: str) -> ThreadKey:
    return ThreadKey(PLATFORM, TENANT, chat_id, thread_id)


def chat_of(chat_id: str) -> tuple[str, str, str]:
    """(platform, tenant, chat id): where the core looks for an answer the chat may rate."""
    return (PLATFORM, TENANT, chat_id)


def refused(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def to_inbound(request: ChatRequest, attachments: tuple[Attachment, ...] = ()) -> Inbound:
    return Inbound(
        platform=PLATFORM,
        tenant=TENANT,
        chat_id=request.chat_id,
        chat_type=ChatType.DIRECT,
        thread_id=request.thread_id,
        message_id=request.message_id,
        sender=Sender(id=request.chat_id, display_name=request.sender_name or "web user"),
        text=request.text,
        mentioned=True,
        attachments=attachments,
        raw=request.model_dump(),
    )


def answer_to_json(answer: Answer) -> dict[str, Any]:
    return {
        "text": answer.text,
        "html": to_html(answer.text),
        "outcome": answer.outcome.value,
        "language": answer.language,
        "notice": answer.notice,
        "turn_id": answer.turn_id,
        "citations": [
            {
                "number": c.number,
                "title": c.title,
                "source": c.source,
                "location": c.location,
                "section": c.section,
                "kind": c.kind,
            }
            for c in answer.citations
        ],
        "timings": {
            "retrieval": answer.timings.retrieval,
            "first_token": answer.timings.first_token,
            "total": answer.timings.total,
        },
    }
