from __future__ import annotations

import uuid
from dataclasses import replace

import pytest
from prometheus_client import REGISTRY

from engine.config import PolicySettings
from engine.messages import Outcome
from engine.policy import MemoryBuckets, Policy, RedisBuckets
from tests.helpers import Core, inbound

REDIS_URL = "redis://127.0.0.1:6379/15"


async def test_memory_bucket_allows_a_burst_then_refills() -> None:
    buckets = MemoryBuckets()
    assert [await buckets.take("k", 3, 1000.0) for _ in range(3)] == [True] * 3
    assert [await buckets.take("slow", 2, 0.001) for _ in range(3)] == [True, True, False]


async def test_redis_buckets_are_shared_between_instances() -> None:
    one, two = RedisBuckets(REDIS_URL), RedisBuckets(REDIS_URL)
    key = f"test-{uuid.uuid4().hex}"
    try:
        try:
            await one._redis.ping()
        except Exception as error:
            pytest.skip(f"Redis at {REDIS_URL} is unreachable: {error}")
        assert await one.take(key, 2, 0.001)
        assert await two.take(key, 2, 0.001)
        assert not await one.take(key, 2, 0.001)  # the second replica used the last token
    finally:
        await one.close()
        await two.close()


async def test_redis_down_limits_per_replica_with_a_warning_and_a_metric(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis unreachable: no error reaches the asker, the limit still holds on this replica,
    one warning per outage, and the metrics say so."""
    buckets = RedisBuckets("redis://127.0.0.1:1/0")
    before = REGISTRY.get_sample_value("teambot_rate_limit_fallbacks_total") or 0.0
    try:
        with caplog.at_level("WARNING", logger="engine.policy"):
            assert await buckets.take("k", 2, 0.001)
            assert await buckets.take("k", 2, 0.001)
            assert not await buckets.take("k", 2, 0.001)  # the per-replica bucket is empty
    finally:
        await buckets.close()
    warnings = [r for r in caplog.records if "limiting per replica" in r.getMessage()]
    assert len(warnings) == 1
    assert REGISTRY.get_sample_value("teambot_rate_limit_fallbacks_total") == before + 3
    assert REGISTRY.get_sample_value("teambot_rate_limits_shared") == 0


def test_allowlists() -> None:
    message = inbound("hi")  # platform web, tenant local, chat c1
    assert Policy(PolicySettings()).allowed(message)
    assert Policy(PolicySettings(allowed_chats=["web:c1"])).allowed(message)
    assert not Policy(PolicySettings(allowed_chats=["web:other"])).allowed(message)
    assert not Policy(PolicySettings(allowed_tenants=["T999"])).allowed(message)


def test_the_web_chat_has_its_own_entry_on_each_allowlist() -> None:
    """Its chat ids are made up by each browser, so only "web:*" can let it in; with a Slack
    channel allowlisted it answers nothing unless that entry is there too."""
    message = inbound("hi")  # platform web, tenant local
    slack_only = PolicySettings(allowed_chats=["slack:C1"], allowed_tenants=["T1"])
    assert not Policy(slack_only).allowed(message)
    both = PolicySettings(allowed_chats=["slack:C1", "web:*"], allowed_tenants=["T1", "web:*"])
    assert Policy(both).allowed(message)
    # a platform-wide entry lets in that platform only
    other = replace(inbound("hi"), platform="slack")
    assert not Policy(PolicySettings(allowed_chats=["web:*"])).allowed(other)


async def test_rate_limited_asker_gets_a_polite_reply(core: Core) -> None:
    core.conversation._policy = Policy(PolicySettings(user_burst=2, user_per_minute=0.01))
    outcomes = []
    for i in range(3):
        answer, _ = await core.ask("How do I reset my VPN connection?", thread=f"r{i}")
        assert answer is not None
        outcomes.append(answer)
    assert [a.outcome for a in outcomes[:2]] == [Outcome.ANSWERED] * 2
    assert outcomes[2].outcome is Outcome.FAILED
    assert "wait a minute" in outcomes[2].text
    assert len(core.fake.requests) == 2
    zh, _ = await core.ask("VPN 怎么重置？", thread="r-zh")
    assert zh is not None and "请稍等" in zh.text


async def test_chat_outside_the_allowlist_is_ignored_silently(core: Core) -> None:
    core.conversation._policy = Policy(PolicySettings(allowed_chats=["slack:C1"]))
    answer, reply = await core.ask("How do I reset my VPN connection?")
    assert answer is None and reply.final is None and reply.updates == []
    assert core.fake.requests == []
