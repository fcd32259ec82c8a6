"""The shared rate limiter's Redis stopped while questions come in: every asker is answered
(while Redis is away each replica limits on its own buckets, and shares again when it is back)."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from adapters.web.adapter import WebReplyChannel
from engine.config import PolicySettings
from engine.messages import Outcome, Sender
from engine.policy import Policy
from tests.helpers import Core, closed_port, inbound

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None, reason="redis-server is not installed"
)


async def test_redis_stopped_during_load_loses_nothing(core: Core, tmp_path: Path) -> None:
    port = closed_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
    )
    policy = Policy(PolicySettings(redis_url=f"redis://127.0.0.1:{port}/0", user_burst=1000))
    core.conversation._policy = policy
    try:
        await asyncio.sleep(0.5)  # redis-server listening

        async def ask(number: int) -> WebReplyChannel:
            reply = WebReplyChannel()
            message = replace(
                inbound(f"How do I reset my VPN password? ({number})", thread=f"r{number}"),
                sender=Sender(f"asker-{number}"),
            )
            await core.conversation.handle(message, reply)
            return reply

        first = await asyncio.gather(*(ask(n) for n in range(6)))
        redis.terminate()
        redis.wait(timeout=10)
        second = await asyncio.gather(*(ask(n) for n in range(6, 12)))
    finally:
        if redis.poll() is None:
            redis.kill()
            redis.wait()
        await policy.close()
    for reply in first + second:
        assert reply.final is not None and reply.final.outcome is Outcome.ANSWERED
