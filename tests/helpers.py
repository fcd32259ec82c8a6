"""Helpers shared by tests in several packages (fixtures live in conftest.py files)."""

from __future__ import annotations

import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.web.adapter import WebReplyChannel
from bot.db import upgrade_async
from engine.config import ConversationSettings, LLMSettings, PolicySettings
from engine.conversation import Conversation
from engine.llm import LLMClient
from engine.messages import Answer, Attachment, ChatType, Inbound, Sender
from engine.policy import Policy
from engine.store.conversations import ConversationStore
from knowledge import Embedder, KnowledgeBase, KnowledgeSettings
from tests.fakes.sglang import FakeSGLang

PG_URL = os.environ.get("TEAMBOT_TEST_PG_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")

_pg_unreachable: str | None = None  # remembered so later tests skip without waiting again


@asynccontextmanager
async def pg_schema() -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """A fresh schema in the test database, dropped afterwards; yields (url, connect_args).

    Skips the test, with the URL and the error, only when PostgreSQL cannot be connected to.
    """
    global _pg_unreachable
    if _pg_unreachable:
        pytest.skip(_pg_unreachable)
    admin = create_async_engine(PG_URL, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        conn = await admin.connect()
    except Exception as e:  # refused, timed out, unknown host or role: all mean "not here"
        await admin.dispose()
        _pg_unreachable = f"PostgreSQL at {PG_URL} is unreachable ({type(e).__name__}: {e})"
        pytest.skip(_pg_unreachable)
    schema = f"teambot_test_{secrets.token_hex(6)}"
    try:
        await conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        await conn.commit()
        yield PG_URL, {"server_settings": {"search_path": schema}}
    finally:
        await conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        await conn.commit()
        await conn.close()
        await admin.dispose()


def sqlite_url(tmp_path: Path) -> str:
    # a missing directory on purpose: the code must create it, as for ./data/ on first start
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'teambot.db'}"


def kb_settings(persist_dir: Path) -> KnowledgeSettings:
    """Knowledge settings for tests: a given chroma folder, a test collection."""
    return KnowledgeSettings(persist_dir=persist_dir, collection="test-kb")


@dataclass
class Core:
    """A real Conversation (SQLite store, sample handbook, client at the fake SGLang) for tests."""

    conversation: Conversation
    store: ConversationStore
    llm: LLMClient
    fake: FakeSGLang

    async def ask(
        self,
        text: str,
        *,
        thread: str = "t1",
        message_id: str | None = None,
        attachments: tuple[Attachment, ...] = (),
        reply: WebReplyChannel | None = None,
    ) -> tuple[Answer | None, WebReplyChannel]:
        reply = reply or WebReplyChannel()
        answer = await self.conversation.handle(
            inbound(text, thread, message_id, attachments), reply
        )
        return answer, reply


def inbound(
    text: str,
    thread: str = "t1",
    message_id: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> Inbound:
    return Inbound(
        platform="web",
        tenant="local",
        chat_id="c1",
        chat_type=ChatType.DIRECT,
        thread_id=thread,
        message_id=message_id or uuid.uuid4().hex,
        sender=Sender("u1", "Ada"),
        text=text,
        attachments=attachments,
    )


def child_env(**settings: str) -> dict[str, str]:
    """The environment of a `teambot` child process: this process's TEAMBOT_ variables and
    proxies left out (loopback fakes only), `settings` (TEAMBOT_ names) on top."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMBOT_")}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(name, None)
    env.update(settings)
    return env


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def make_core(
    tmp_path: Path,
    embedder: Embedder,
    sample_index: Path,
    fake: FakeSGLang,
    *,
    llm: dict[str, object] | None = None,
    conversation: dict[str, object] | None = None,
    policy: PolicySettings | None = None,
) -> tuple[Core, KnowledgeBase]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'teambot.db'}"
    await upgrade_async(url)
    store = ConversationStore.from_url(url)
    kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
    llm_settings = LLMSettings(
        **{"base_url": fake.base_url, "first_token_timeout": 5, "idle_timeout": 2, **(llm or {})}
    )
    client = LLMClient(llm_settings)
    core = Conversation(
        ConversationSettings(**(conversation or {})),
        store=store,
        retriever=kb.retriever,
        llm=client,
        policy=Policy(policy or PolicySettings()),
    )
    return Core(core, store, client, fake), kb


async def sign_in(client: Any, name: str, password: str) -> Any:
    """Sign in to the console as a browser does: the login page first (its CSRF cookie), then
    the form with the same token (bot/console/sign_in.py). `client` is an httpx.AsyncClient."""
    from bot.console.auth import LOGIN_COOKIE

    if LOGIN_COOKIE not in client.cookies:
        await client.get("/console/login")
    token = client.cookies.get(LOGIN_COOKIE, "")
    fields = {"name": name, "password": password, "csrf": token}
    return await client.post("/console/login", data=fields)
