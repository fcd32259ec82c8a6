"""Faults during load: PostgreSQL connections killed (pg_terminate_backend, the shared server
keeps running) and the model server flapping while many questions are answered at once.
Nothing is lost (every asker gets exactly one final message) and nothing is answered twice (no
event is left for the sweeper to apologise for after the asker was told)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.web.adapter import WebReplyChannel
from bot.db import upgrade_async
from engine.config import ConversationSettings, PolicySettings
from engine.conversation import Conversation
from engine.llm import LLMClient, LLMSettings
from engine.messages import Sender
from engine.policy import Policy
from engine.store.conversations import ConversationStore
from knowledge import Embedder, KnowledgeBase
from tests.fakes.sglang import FakeSGLang
from tests.helpers import PG_URL, Core, inbound, kb_settings, pg_schema

pytestmark = pytest.mark.postgres

QUESTIONS = 24


@pytest.fixture
async def core_and_name(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[tuple[Core, str]]:
    name = f"teambot-fault-{secrets.token_hex(4)}"  # the application_name the killer looks for
    async with pg_schema() as (url, connect_args):
        args: dict[str, Any] = {
            "server_settings": {**connect_args["server_settings"], "application_name": name}
        }
        await upgrade_async(url, connect_args=connect_args)
        store = ConversationStore.from_url(url, connect_args=args)
        kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
        client = LLMClient(
            LLMSettings(base_url=fake_sglang.base_url, first_token_timeout=5, max_retries=1)
        )
        conversation = Conversation(
            ConversationSettings(),
            store=store,
            retriever=kb.retriever,
            llm=client,
            policy=Policy(PolicySettings(user_burst=1000, chat_burst=1000)),
        )
        try:
            yield Core(conversation, store, client, fake_sglang), name
        finally:
            await client.close()
            await kb.close()
            await store.close()


class Counting(WebReplyChannel):
    def __init__(self) -> None:
        super().__init__()
        self.finals = 0

    async def finish(self, answer: Any) -> None:
        self.finals += 1
        await super().finish(answer)


async def test_killed_connections_and_a_flapping_model_lose_nothing(
    core_and_name: tuple[Core, str],
) -> None:
    core, name = core_and_name
    admin = create_async_engine(PG_URL, poolclass=NullPool, isolation_level="AUTOCOMMIT")
    killed = 0

    async def kill_connections() -> None:
        nonlocal killed
        while True:
            await asyncio.sleep(0.25)
            async with admin.connect() as conn:
                result = await conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE application_name = :name"
                    ),
                    {"name": name},
                )
                killed += len(result.all())

    async def flap_model() -> None:
        while True:
            core.fake.behave(fail_status=500, fail_times=None)
            await asyncio.sleep(0.4)
            core.fake.behave(fail_status=None, fail_times=None)
            await asyncio.sleep(0.4)

    async def ask(number: int) -> Counting:
        reply = Counting()
        message = replace(
            inbound(f"How do I reset my VPN password? ({number})", thread=f"t{number}"),
            sender=Sender(f"asker-{number}"),
        )
        await core.conversation.handle(message, reply)
        return reply

    chaos = [asyncio.create_task(kill_connections()), asyncio.create_task(flap_model())]
    try:
        replies = await asyncio.gather(*(ask(n) for n in range(QUESTIONS)))
    finally:
        for task in chaos:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        core.fake.behave(fail_status=None)
    assert killed > 0, "the test killed no connection: it proved nothing"
    assert [r.finals for r in replies] == [1] * QUESTIONS  # nobody lost, nobody answered twice
    # what the sweeper would find now: nothing, so no asker gets a second message (asked on
    # fresh connections: the chaos's last kill may have hit one the pool still holds)
    await core.store.engine.dispose()
    now = datetime.now(UTC)
    left = await core.store.upkeep.unanswered_events(
        older_than=now + timedelta(seconds=1), newer_than=now - timedelta(hours=1)
    )
    assert left == []
    await admin.dispose()
