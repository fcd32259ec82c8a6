"""The built-in web chat: the page at /, an HTTP + server-sent-events adapter that doubles as
the test backend, and its own tables (which session owns a chat, the cookie signing key).
`PLATFORM` is what the registry serves; `METADATA` its tables, for the migrations."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from adapters.platform import Platform, Wiring
from adapters.web.config import WebChatSettings
from adapters.web.tables import WebChatBase

if TYPE_CHECKING:
    from fastapi import APIRouter

    from adapters.base import Adapter
    from engine.config import PolicySettings

__all__ = ["METADATA", "PLATFORM", "WebChatSettings"]

log = logging.getLogger(__name__)

METADATA = WebChatBase.metadata


def build(settings: WebChatSettings, wiring: Wiring) -> Adapter:
    from adapters.web.adapter import WebAdapter
    from adapters.web.broadcast import make_broadcast
    from engine.config import PolicySettings
    from engine.policy import Buckets, MemoryBuckets, RedisBuckets

    policy = wiring.policy or PolicySettings()
    buckets: Buckets = RedisBuckets(policy.redis_url) if policy.redis_url else MemoryBuckets()
    # pages on every replica hear a thread's events: PostgreSQL or Redis, else this process
    broadcast = make_broadcast(
        settings.events, wiring.database_url, policy.redis_url, wiring.database
    )
    warn_if_not_allowed(policy)
    return WebAdapter(
        wiring.core, settings, engine=wiring.database, buckets=buckets, broadcast=broadcast
    )


def routers(settings: WebChatSettings, adapter: Adapter, wiring: Wiring) -> list[APIRouter]:
    from adapters.web.adapter import WebAdapter
    from adapters.web.page import page_router

    assert isinstance(adapter, WebAdapter)
    return [page_router(wiring.running, adapter.sessions)]


def warn_if_not_allowed(policy: PolicySettings) -> None:
    """With an allowlist set, the web chat answers only when "web:*" is on it: say so at start."""
    for name, entries in (
        ("allowed_chats", policy.allowed_chats),
        ("allowed_tenants", policy.allowed_tenants),
    ):
        if entries and "web:*" not in entries:
            log.warning(
                'the web chat is on but [policy] %s does not list "web:*": it will answer '
                'nothing. Add "web:*" to %s, or set [server] web_chat = false',
                name,
                name,
            )


PLATFORM = Platform(
    name="web",
    label=("网页聊天", "web chat"),
    section="webchat",
    settings=WebChatSettings,
    build=build,
    switch=("server", "web_chat"),  # [webchat] holds its limits; [server] web_chat turns it on
    routers=routers,
    metadata=METADATA,
)
