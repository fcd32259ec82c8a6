"""The core against hostile text and failures inside it: every claimed message ends in a final
message to the asker and an outcome metric, and recovery never apologises a second time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from adapters.web.adapter import WebReplyChannel
from bot.db import upgrade_async
from engine.answer import ending
from engine.config import ConversationSettings
from engine.conversation import Conversation
from engine.llm import LLMClient, LLMSettings
from engine.messages import Outcome, Sender
from engine.store.conversations import ConversationStore
from knowledge import Embedder, KnowledgeBase
from tests.fakes.sglang import FakeSGLang
from tests.helpers import Core, inbound, kb_settings, pg_schema

hostile = st.text(
    alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF), max_size=200
) | st.sampled_from(["\ud800", "\x00", "\x00" * 5, "VPN\x00 怎么连\ud800?", "\u202e\x1b[2J"])


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def no_unanswered(store: ConversationStore) -> bool:
    now = datetime.now(UTC)
    events = await store.upkeep.unanswered_events(
        older_than=now + timedelta(seconds=1), newer_than=now - timedelta(hours=1)
    )
    return events == []


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=hostile)
async def test_any_text_gets_a_final_message(core: Core, text: str) -> None:
    answer, reply = await core.ask(text)
    assert answer is not None and reply.final is not None
    assert reply.final.outcome in set(Outcome)
    reply.final.text.encode("utf-8")  # what goes back to the platform is valid text


async def test_a_failure_inside_the_core_ends_in_a_polite_reply_once(core: Core) -> None:
    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("index exploded")

    core.conversation._retriever.retrieve = broken  # type: ignore[method-assign]
    failed_before = counter("teambot_answers_total", platform="web", outcome="failed")
    errors_before = counter("teambot_answer_errors_total", platform="web", error="RuntimeError")
    answer, reply = await core.ask("VPN 怎么连接？")
    assert reply.final is not None and reply.final.outcome is Outcome.FAILED
    assert reply.final.text == ending.phrase("failed", "zh")
    assert "index exploded" not in reply.final.text
    assert answer == reply.final
    assert counter("teambot_answers_total", platform="web", outcome="failed") == failed_before + 1
    assert (
        counter("teambot_answer_errors_total", platform="web", error="RuntimeError")
        == errors_before + 1
    )
    assert await no_unanswered(core.store)  # marked: the sweeper will not apologise again


async def test_an_answer_that_cannot_be_stored_is_still_delivered(core: Core) -> None:
    core.fake.behave(answer="Connect with the VPN client [1].")

    async def refuse(*_: Any, **__: Any) -> int:
        raise ConnectionError("database went away")

    core.store.add_turn = refuse  # type: ignore[method-assign]
    _, reply = await core.ask("How do I connect to the VPN?")
    assert reply.final is not None and reply.final.outcome is Outcome.ANSWERED
    assert "VPN client" in reply.final.text and reply.final.turn_id is None


async def test_an_answer_cancelled_by_shutdown_tells_the_asker(core: Core) -> None:
    core.fake.behave(hang_after_tokens=3)
    reply = WebReplyChannel()
    task = asyncio.create_task(core.conversation.handle(inbound("How do I reset the VPN?"), reply))
    while not reply.updates:  # half written
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert reply.final is not None and reply.final.text == ending.phrase("stopping", "en")
    assert await no_unanswered(core.store)


async def test_the_apology_itself_failing_leaves_the_event_for_the_sweeper(core: Core) -> None:
    class Unreachable(WebReplyChannel):
        async def finish(self, answer: Any) -> None:
            raise ConnectionError("platform down")

    async def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("boom")

    core.conversation._retriever.retrieve = broken  # type: ignore[method-assign]
    result = await core.conversation.handle(inbound("hello?"), Unreachable())
    assert result is None
    assert not await no_unanswered(core.store)


@pytest.fixture
async def pg_core(
    tmp_path: Path, embedder: Embedder, sample_index: Path, fake_sglang: FakeSGLang
) -> AsyncIterator[Core]:
    async with pg_schema() as (url, connect_args):
        await upgrade_async(url, connect_args=connect_args)
        store = ConversationStore.from_url(url, connect_args=connect_args)
        kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
        client = LLMClient(LLMSettings(base_url=fake_sglang.base_url, first_token_timeout=5))
        conversation = Conversation(
            ConversationSettings(),
            store=store,
            retriever=kb.retriever,
            llm=client,
        )
        try:
            yield Core(conversation, store, client, fake_sglang)
        finally:
            await client.close()
            await kb.close()
            await store.close()


@pytest.mark.postgres
async def test_nul_on_postgresql_is_answered_and_stored(pg_core: Core) -> None:
    pg_core.fake.behave(answer="Use the VPN\x00 client [1].\x00")
    for text in ("\x00", "How do I connect\x00 to the VPN?", "VPN\ud800?"):
        answer, reply = await pg_core.ask(text, thread=f"t-{len(text)}")
        assert reply.final is not None and answer is not None
        assert answer.turn_id is not None, text  # stored: the NUL never reached PostgreSQL
        assert "\x00" not in reply.final.text
    assert await no_unanswered(pg_core.store)


async def test_a_poisoned_batch_fails_only_the_bad_question(embedder: Embedder) -> None:
    """Many questions share one query-embedding batch; one that breaks the encoder fails alone."""
    from knowledge.embedding.base import _Batcher

    real = embedder.encode_queries

    def fragile(texts: list[str]) -> list[tuple[list[float], float]]:
        if any("POISON" in t for t in texts):
            raise ValueError("tokenizer refused the text")
        return real(texts)

    batcher = _Batcher(embedder)
    embedder.encode_queries = fragile  # type: ignore[method-assign]
    try:
        questions = [f"valid question number {n}" for n in range(11)] + ["POISON"]
        results = await asyncio.gather(
            *(batcher.submit(q) for q in questions), return_exceptions=True
        )
    finally:
        del embedder.encode_queries
    assert all(isinstance(r, tuple) for r in results[:11])
    assert isinstance(results[11], ValueError)


async def test_many_questions_and_bad_ones_at_once_are_all_answered(core: Core) -> None:
    valid = [f"How do I reset my VPN password? ({n})" for n in range(11)]
    bad = ["\ud800", "\x00", "VPN\ud800\x00?", "\udfff" * 50]

    async def ask(number: int, text: str) -> tuple[Any, WebReplyChannel]:
        reply = WebReplyChannel()
        message = replace(inbound(text, f"t{number}"), sender=Sender(f"asker-{number}"))
        return await core.conversation.handle(message, reply), reply

    results = await asyncio.gather(*(ask(n, q) for n, q in enumerate(valid + bad)))
    for answer, reply in results:
        assert answer is not None and reply.final is not None
    outcomes = [r[1].final.outcome for r in results[:11]]  # type: ignore[union-attr]
    texts = [r[1].final.text[:80] for r in results[:11]]  # type: ignore[union-attr]
    assert Outcome.FAILED not in outcomes, texts
    assert await no_unanswered(core.store)
