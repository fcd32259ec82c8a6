"""The web chat's page events across replicas (adapters/web/broadcast.py): what one process posts
into a web thread reaches that thread's open pages in every process, once each — through
PostgreSQL LISTEN/NOTIFY (long events in chunks under its 8000-byte limit), or Redis pub/sub —
and the listener comes back by itself after its connection is cut."""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from adapters.web import broadcast as broadcast_module
from adapters.web.adapter import WebAdapter
from adapters.web.broadcast import (
    CHANNEL,
    LocalOnly,
    PostgresBroadcast,
    RedisBroadcast,
    Wire,
    make_broadcast,
)
from adapters.web.late import page_event
from engine.messages import Answer, Outcome, ThreadKey
from tests.helpers import PG_URL, closed_port

CORE: Any = object()
KEY = ThreadKey("web", "local", "chat1", "thread1")
LONG = "请带上工牌。" * 4000  # 24,000 Chinese characters: six times that as ASCII JSON


def test_a_long_event_goes_in_chunks_under_the_notify_limit_and_comes_back_whole() -> None:
    sender, receiver = Wire(), Wire()
    event = {"type": "agent", "text": LONG}
    messages = sender.encode(KEY, event)
    assert len(messages) > 10
    assert all(len(m.encode()) < 8000 for m in messages)
    assert all(sender.decode(m) is None for m in messages)  # its own: never delivered twice
    shuffled = random.Random(7).sample(messages, len(messages))
    found = [receiver.decode(m) for m in shuffled]
    assert found[:-1] == [None] * (len(messages) - 1)
    assert found[-1] == (KEY, event)
    assert receiver.decode("not ours") is None


def test_apologies_show_as_the_bots_and_replies_as_a_colleagues() -> None:
    reply = page_event(Answer(text="**Mei**\n\nHi", outcome=Outcome.HANDED_OFF))
    assert reply["type"] == "agent" and "<strong>Mei</strong>" in reply["html"]
    sorry = page_event(Answer(text="Sorry — please ask again.", outcome=Outcome.FAILED))
    assert sorry["type"] == "bot" and sorry["answer"]["outcome"] == "failed"


def test_the_bus_follows_the_settings() -> None:
    none: Callable[[], AsyncEngine | None] = lambda: None  # noqa: E731
    sqlite = "sqlite+aiosqlite:///x.db"
    assert isinstance(make_broadcast("auto", sqlite, "", none), LocalOnly)
    assert isinstance(make_broadcast("auto", PG_URL, "", none), PostgresBroadcast)
    assert isinstance(make_broadcast("auto", PG_URL, "redis://127.0.0.1:1/0", none), RedisBroadcast)
    with pytest.raises(ValueError, match="needs a PostgreSQL"):
        make_broadcast("postgres", sqlite, "", none)
    with pytest.raises(ValueError, match="redis_url"):
        make_broadcast("redis", sqlite, "", none)


async def _heard(queue: asyncio.Queue[dict[str, Any]], within: float = 10) -> dict[str, Any]:
    return await asyncio.wait_for(queue.get(), within)


async def _two_replicas_one_reply(first: WebAdapter, second: WebAdapter) -> None:
    """A page on each replica; the second posts a short and a long reply: each page hears both,
    once."""
    here, there = second.pages.listen(KEY), first.pages.listen(KEY)
    elsewhere = first.pages.listen(ThreadKey("web", "local", "chat1", "other"))
    channel = second.reply_channel(KEY)
    assert channel is not None
    await channel.finish(Answer(text="**Mei** · support\n\nOn it.", outcome=Outcome.HANDED_OFF))
    await channel.finish(Answer(text=LONG, outcome=Outcome.HANDED_OFF))
    for queue in (here, there):
        short, long = await _heard(queue), await _heard(queue)
        assert short["type"] == "agent" and "On it." in short["text"]
        assert long["text"] == LONG
    await asyncio.sleep(0.5)
    assert here.empty() and there.empty() and elsewhere.empty()


async def _listening_again(before: int, bus: PostgresBroadcast | RedisBroadcast) -> None:
    async def again() -> None:
        while bus.listener.sessions <= before or not bus.listener.connected.is_set():
            await asyncio.sleep(0.05)

    await asyncio.wait_for(again(), 15)


@pytest.fixture
async def pg_engine() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(PG_URL, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        await engine.dispose()
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({error})")
    yield engine
    await engine.dispose()


@pytest.mark.postgres
async def test_postgres_carries_a_reply_to_the_other_replicas_pages(
    pg_engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broadcast_module, "BACKOFF", (0.1, 0.5))
    replicas = [
        WebAdapter(CORE, broadcast=PostgresBroadcast(PG_URL, lambda: pg_engine)) for _ in "ab"
    ]
    for replica in replicas:
        await replica.start()
    try:
        buses = [r.pages.broadcast for r in replicas]
        for bus in buses:
            assert isinstance(bus, PostgresBroadcast)
            await asyncio.wait_for(bus.listener.connected.wait(), 10)
        await _two_replicas_one_reply(*replicas)

        # the first replica's listening connection is cut: it listens again by itself
        first = buses[0]
        assert isinstance(first, PostgresBroadcast)
        before = first.listener.sessions
        async with pg_engine.connect() as conn:
            cut = await conn.scalar(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE :listen"
                ),
                {"listen": f'%LISTEN "{CHANNEL}"%'},
            )
        assert cut and cut >= 1
        await _listening_again(before, first)
        await _two_replicas_one_reply(*replicas)
    finally:
        for replica in replicas:
            await replica.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_redis_carries_a_reply_and_resubscribes_after_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(broadcast_module, "BACKOFF", (0.1, 0.5))
    port = closed_port()
    command = ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"]
    server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    replicas = [WebAdapter(CORE, broadcast=RedisBroadcast(url)) for _ in "ab"]
    try:
        await asyncio.sleep(0.5)
        for replica in replicas:
            await replica.start()
        buses = [r.pages.broadcast for r in replicas]
        for bus in buses:
            assert isinstance(bus, RedisBroadcast)
            await asyncio.wait_for(bus.listener.connected.wait(), 10)
        await _two_replicas_one_reply(*replicas)

        server.terminate()
        server.wait(timeout=10)
        await asyncio.sleep(1)
        server = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.DEVNULL)
        for bus in buses:
            assert isinstance(bus, RedisBroadcast)
            await _listening_again(1, bus)
        await _two_replicas_one_reply(*replicas)
    finally:
        for replica in replicas:
            await replica.stop()
        if server.poll() is None:
            server.terminate()
            server.wait(timeout=10)


class _SlowCore:
    """Answers once `release` is set."""

    def __init__(self) -> None:
        self.release = asyncio.Event()

    async def handle(self, inbound: Any, reply: Any) -> Answer:
        await reply.open("en")
        await self.release.wait()
        answer = Answer(text="Badges are at the front desk.", outcome=Outcome.ANSWERED)
        await reply.finish(answer)
        return answer


async def test_an_answer_whose_page_went_away_reaches_the_threads_open_pages() -> None:
    from adapters.web.convert import ChatRequest, to_inbound

    core = _SlowCore()
    adapter = WebAdapter(core)  # type: ignore[arg-type]
    request = ChatRequest(chat_id="chat1", thread_id="thread1", message_id="m1", text="badge?")
    page = adapter.pages.listen(KEY)

    async def nothing() -> None:
        return None

    stream = adapter._stream(to_inbound(request, ()), nothing)
    assert '"open"' in await stream.__anext__()
    await stream.aclose()  # the browser went away before the answer ended
    core.release.set()
    late = await _heard(page)
    assert late["type"] == "bot" and late["late"] is True
    assert late["answer"]["text"] == "Badges are at the front desk."

    # a page that read its answer to the end gets it once, in its own stream only
    core.release = asyncio.Event()
    core.release.set()
    request = ChatRequest(chat_id="chat1", thread_id="thread1", message_id="m2", text="again?")
    events = [e async for e in adapter._stream(to_inbound(request, ()), nothing)]
    assert any('"final"' in e for e in events)
    await asyncio.sleep(0.2)
    assert page.empty()


async def test_the_doctor_says_how_pages_hear_other_replicas() -> None:
    [alone] = await WebAdapter(CORE).check()
    assert alone.status == "ok" and "this process only" in alone.detail
    unreachable = f"redis://127.0.0.1:{closed_port()}/0"
    [down] = await WebAdapter(CORE, broadcast=RedisBroadcast(unreachable)).check()
    assert down.status == "error" and "cannot reach [policy] redis_url" in down.detail
