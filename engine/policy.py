"""Who the bot answers and how often: allowlists and token-bucket rate limits."""

from __future__ import annotations

import logging
import time
from typing import Protocol

from engine import metrics
from engine.config import PolicySettings
from engine.messages import Inbound

log = logging.getLogger(__name__)

# KEYS[1] bucket; ARGV: capacity, refill per second, now. Returns 1 when a token was taken.
_REDIS_BUCKET = """
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local capacity, rate, now = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local tokens, at = tonumber(state[1]) or capacity, tonumber(state[2]) or now
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local taken = 0
if tokens >= 1 then tokens = tokens - 1; taken = 1 end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('EXPIRE', KEYS[1], math.ceil(capacity / rate) + 60)
return taken
"""


class Buckets(Protocol):
    async def take(self, key: str, capacity: int, per_second: float) -> bool: ...

    async def close(self) -> None: ...


class MemoryBuckets:
    """Token buckets in this process (one replica, or limits per replica)."""

    def __init__(self, max_keys: int = 100_000) -> None:
        self._state: dict[str, tuple[float, float]] = {}
        self._max_keys = max_keys

    async def take(self, key: str, capacity: int, per_second: float) -> bool:
        now = time.monotonic()
        tokens, at = self._state.get(key, (float(capacity), now))
        tokens = min(float(capacity), tokens + (now - at) * per_second)
        taken = tokens >= 1
        self._state[key] = (tokens - 1 if taken else tokens, now)
        if len(self._state) > self._max_keys:  # forget the oldest buckets; they were full anyway
            for stale in list(self._state)[: self._max_keys // 10]:
                del self._state[stale]
        return taken

    async def close(self) -> None:
        self._state.clear()


class RedisBuckets:
    """Token buckets in Redis, shared by every replica (an atomic Lua script per take).

    While Redis cannot be reached, each replica limits on its own buckets (so a limit still
    holds, per replica), logs one warning per outage, counts each fallback
    (`teambot_rate_limit_fallbacks`) and shows `teambot_rate_limits_shared` 0; it goes back to
    Redis as soon as a call succeeds. A limiter never fails a message."""

    def __init__(self, url: str, *, timeout: float = 0.5) -> None:
        from redis.asyncio import Redis

        self._redis = Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self._script = self._redis.register_script(_REDIS_BUCKET)
        self._local = MemoryBuckets()
        self._down = False
        metrics.RATE_LIMITS_SHARED.set(1)

    async def take(self, key: str, capacity: int, per_second: float) -> bool:
        try:
            result = await self._script(
                keys=[f"teambot:rl:{key}"], args=[capacity, per_second, time.time()]
            )
        except Exception as error:  # a rate limiter must not take the bot down with it
            if not self._down:
                log.warning(
                    "redis rate limiter unreachable (%s): limiting per replica until it is back",
                    error,
                )
                self._down = True
                metrics.RATE_LIMITS_SHARED.set(0)
            metrics.RATE_LIMIT_FALLBACKS.inc()
            return await self._local.take(key, capacity, per_second)
        if self._down:
            log.warning("redis rate limiter reachable again: limits are shared across replicas")
            self._down = False
            metrics.RATE_LIMITS_SHARED.set(1)
        return bool(result)

    async def close(self) -> None:
        await self._redis.aclose()
        await self._local.close()


class Policy:
    """Decides whether a message is answered at all (allowlists) and whether now (rate limits)."""

    def __init__(self, settings: PolicySettings, buckets: Buckets | None = None) -> None:
        self._settings = settings
        self._buckets = buckets or (
            RedisBuckets(settings.redis_url) if settings.redis_url else MemoryBuckets()
        )

    def allowed(self, inbound: Inbound) -> bool:
        """False when the workspace/tenant or chat is not on a configured allowlist. An entry
        "platform:*" in a list lets in every tenant or chat of that platform: "web:*" is the
        built-in web chat's entry (its chats are made up by each browser, its one tenant is no
        workspace)."""
        tenants, chats = self._settings.allowed_tenants, self._settings.allowed_chats
        everywhere = f"{inbound.platform}:*"
        if tenants and inbound.tenant not in tenants and everywhere not in tenants:
            return False
        return not chats or everywhere in chats or f"{inbound.platform}:{inbound.chat_id}" in chats

    def follows_up(self, inbound: Inbound) -> bool:
        """Whether an un-mentioned message in a thread the bot answered is answered here
        (`follow_ups`, and the chat or its platform not in `followups_off`)."""
        off = self._settings.followups_off
        here = (f"{inbound.platform}:{inbound.chat_id}", f"{inbound.platform}:*")
        return self._settings.follow_ups and not any(entry in off for entry in here)

    async def within_limits(self, inbound: Inbound) -> bool:
        """Take one token from the asker's and the chat's buckets."""
        s = self._settings
        user = f"user:{inbound.platform}:{inbound.tenant}:{inbound.sender.id}"
        if not await self._buckets.take(user, s.user_burst, s.user_per_minute / 60):
            return False
        chat = f"chat:{inbound.platform}:{inbound.tenant}:{inbound.chat_id}"
        return await self._buckets.take(chat, s.chat_burst, s.chat_per_minute / 60)

    async def close(self) -> None:
        await self._buckets.close()
