"""Several replicas, one DingTalk Stream connection: a PostgreSQL advisory lock picks the holder,
and a standby takes over within seconds when the holder goes away."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from adapters.dingtalk.adapter import DingTalkAdapter
from bot.leader import DatabaseLeadership
from tests.contract.test_dingtalk import settings_for
from tests.fakes.dingtalk import FakeDingTalk, bot_message
from tests.helpers import PG_URL, Core

pytestmark = pytest.mark.postgres


@pytest.fixture
async def fake() -> AsyncIterator[FakeDingTalk]:
    engine = create_async_engine(PG_URL, poolclass=NullPool, connect_args={"timeout": 5})
    try:
        async with engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as error:
        pytest.skip(f"PostgreSQL at {PG_URL} is unreachable ({error})")
    finally:
        await engine.dispose()
    # a fresh app id per test: the advisory lock is named after it
    async with FakeDingTalk(client_id=f"ding-{secrets.token_hex(4)}") as server:
        yield server


async def test_one_replica_holds_the_stream_and_a_standby_takes_over(
    fake: FakeDingTalk, core: Core
) -> None:
    settings = settings_for(fake, leader_poll=0.2)
    first = DingTalkAdapter(settings, core.conversation, DatabaseLeadership(PG_URL))
    second = DingTalkAdapter(settings, core.conversation, DatabaseLeadership(PG_URL))
    await first.start()
    await second.start()
    try:
        assert first.status().connected is True
        assert second.status().mode == "stream (standby)"
        assert len(fake.sockets) == 1  # DingTalk sees one connection for the app

        await first.stop()  # the holder goes away (its lock connection closes with it)
        gone = time.monotonic()
        while not (len(fake.sockets) == 1 and second.status().connected is True):
            assert time.monotonic() - gone < 10, f"no takeover: {second.status()}"
            await asyncio.sleep(0.05)
        took_over = time.monotonic() - gone
        assert took_over < 5, f"standby took {took_over:.1f} s to take over"
        print(f"\nDingTalk Stream takeover after the holder stopped: {took_over:.2f} s")
        frame = await fake.push(bot_message("How many days of annual leave do I get?", group=False))
        await fake.ack(frame)
        await second.drain()
        assert fake.acks[frame]["code"] == 200
    finally:
        await second.stop()
        await first.stop()
