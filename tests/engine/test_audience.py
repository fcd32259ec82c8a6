"""Audiences through the core: the conversation tells retrieval who is asking, so an answer in a
chat never cites a document that chat (or that asker) may not open."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.web.adapter import WebReplyChannel
from bot.db import upgrade_async
from engine.config import ConversationSettings
from engine.conversation import Conversation, reader_of
from engine.messages import Answer, ChatType, Inbound, Sender
from engine.store.conversations import ConversationStore
from knowledge import Embedder, KnowledgeBase, SourceSettings
from tests.helpers import kb_settings

FALCON = "# Project Falcon\n\nProject Falcon launch codes are kept in vault seven behind the blue door.\n"
CANTEEN = "# Canteen\n\nThe Acme canteen serves pancakes every Friday at eight in the morning.\n"


@pytest.fixture
async def core(tmp_path: Path, embedder: Embedder) -> AsyncIterator[Conversation]:
    """A real core over two sources: one shared with Feishu chat oc_a only, one with the whole
    Feishu tenant tk1. No model: answers are retrieval-only, their citations the passages."""
    sources = []
    for name, text, audience in (
        ("falcon", FALCON, ["feishu:chat:oc_a"]),
        ("canteen", CANTEEN, ["feishu:tenant:tk1"]),
    ):
        folder = tmp_path / name
        folder.mkdir()
        (folder / f"{name}.md").write_text(text, encoding="utf-8")
        sources.append(
            SourceSettings(name=name, kind="directory", location=str(folder), audience=audience)
        )
    settings = kb_settings(tmp_path / "chroma").model_copy(update={"sources": sources})
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    for source in sources:
        assert (await kb.refresh(source.name)).result == "ok"
    url = f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"
    await upgrade_async(url)
    store = ConversationStore.from_url(url)
    yield Conversation(ConversationSettings(), store=store, retriever=kb.retriever, llm=None)
    await store.close()
    await kb.close()


def message(
    text: str,
    *,
    chat: str,
    group: bool,
    user: str = "ou_1",
    platform: str = "feishu",
    tenant: str = "tk1",
) -> Inbound:
    return Inbound(
        platform=platform,
        tenant=tenant,
        chat_id=chat,
        chat_type=ChatType.GROUP if group else ChatType.DIRECT,
        thread_id=uuid.uuid4().hex,
        message_id=uuid.uuid4().hex,
        sender=Sender(user, "Ada"),
        text=text,
        mentioned=True,
    )


async def cited(core: Conversation, inbound: Inbound) -> set[str]:
    answer: Answer | None = await core.handle(inbound, WebReplyChannel())
    assert answer is not None
    return {c.source for c in answer.citations}


async def test_a_chat_only_document_is_cited_in_that_chat_alone(core: Conversation) -> None:
    question = "Where are the Project Falcon launch codes kept?"
    assert "falcon" in await cited(core, message(question, chat="oc_a", group=True))
    assert "falcon" not in await cited(core, message(question, chat="oc_b", group=True))
    assert "falcon" not in await cited(core, message(question, chat="oc_dm", group=False))
    web = message(question, chat="c1", group=False, platform="web", tenant="local")
    assert "falcon" not in await cited(core, web)


async def test_a_tenant_wide_document_is_cited_everywhere_in_the_tenant(core: Conversation) -> None:
    question = "When does the canteen serve pancakes?"
    for inbound in (
        message(question, chat="oc_a", group=True),
        message(question, chat="oc_b", group=True),
        message(question, chat="oc_dm", group=False),
    ):
        assert "canteen" in await cited(core, inbound)
    assert "canteen" not in await cited(
        core, message(question, chat="oc_x", group=True, tenant="tk2")
    )
    web = message(question, chat="c1", group=False, platform="web", tenant="local")
    assert "canteen" not in await cited(core, web)


def test_the_reader_is_the_chat_in_a_group_and_the_asker_in_a_direct_message() -> None:
    in_group = reader_of(message("hi", chat="oc_a", group=True, user="ou_1"))
    assert in_group.principals == {"feishu:chat:oc_a"}
    alone = reader_of(message("hi", chat="oc_dm", group=False, user="ou_1"))
    assert alone.principals == {"feishu:chat:oc_dm", "feishu:user:ou_1"}
    web = reader_of(message("hi", chat="c1", group=False, platform="web", tenant="local"))
    assert web.principals == {"web:*"}
