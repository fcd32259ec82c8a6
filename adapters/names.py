"""Names people read in the console: a chat's name and an asker's display name, looked up from
the platform (an adapter offers a `directory`) and cached, since they rarely change."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from engine.messages import ThreadKey

CACHE_SECONDS = 3600.0
LOOKUP_SECONDS = 3.0  # a slow platform must not hold up a console page


class Directory(Protocol):
    async def chat_name(self, key: ThreadKey) -> str:
        """The chat's name as people know it ("#it-help"); "" when unknown."""

    async def user_name(self, key: ThreadKey, user_id: str) -> str:
        """The user's display name; "" when unknown."""


class NameCache:
    """id -> name for `CACHE_SECONDS`; a failed or slow lookup is remembered as "" briefly."""

    def __init__(self, max_entries: int = 20_000) -> None:
        self._names: dict[str, tuple[str, float]] = {}
        self._max = max_entries

    async def get(self, key: str, lookup: Callable[[], Awaitable[str]]) -> str:
        found = self._names.get(key)
        now = time.monotonic()
        if found is not None and found[1] > now:
            return found[0]
        try:
            name = await asyncio.wait_for(lookup(), LOOKUP_SECONDS)
        except Exception:  # any failure: show the id instead, ask again in a minute
            name, ttl = "", 60.0
        else:
            ttl = CACHE_SECONDS if name else 300.0
        if len(self._names) >= self._max:
            self._names.clear()
        self._names[key] = (name, now + ttl)
        return name
