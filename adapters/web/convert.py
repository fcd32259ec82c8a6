"""Pure conversions for the built-in web chat: request -> Inbound, Answer -> JSON."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from adapters.markdown import to_html
from engine.messages import Answer, Attachment, ChatType, Inbound, Sender, ThreadKey

PLATFORM = "web"
TENANT = "local"


class ChatRequest(BaseModel):
    """One message typed into the web chat."""

    chat_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    thread_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    message_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    text: str = Field(max_length=100_000)
    sender_name: str = Field(default="", max_length=100)


class EscalateRequest(BaseModel):
    """A "Talk to a person" click in the web chat."""

    chat_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    thread_id: str = Field(min_length=1, max_length=100, pattern=r"^[\w.:-]+$")
    language: str = Field(default="en", pattern=r"^(en|zh)$")


def thread_key(chat_id: str, thread_id: str) -> ThreadKey:
    return ThreadKey(PLATFORM, TENANT, chat_id, thread_id)


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
