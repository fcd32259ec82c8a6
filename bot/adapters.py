"""Which platform adapters run, built from their own settings sections (imported only when on)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy.ext.asyncio import AsyncEngine

from adapters.base import Adapter, Core
from adapters.web.adapter import WebAdapter
from adapters.web.broadcast import make_broadcast
from bot.settings import ConfigError, Settings
from engine.policy import Buckets, MemoryBuckets, RedisBuckets

log = logging.getLogger(__name__)


def build_adapters(
    settings: Settings, core: Core, *, engine: Callable[[], AsyncEngine | None] = lambda: None
) -> list[Adapter]:
    """The web chat (when on) plus every enabled platform adapter. `engine` returns the
    database once it is open (the web chat keeps its sessions' chats there)."""
    adapters: list[Adapter] = []
    if settings.server.web_chat:
        policy = settings.policy
        buckets: Buckets = RedisBuckets(policy.redis_url) if policy.redis_url else MemoryBuckets()
        try:
            broadcast = make_broadcast(
                settings.webchat.events, settings.storage.url, policy.redis_url, engine
            )
        except ValueError as error:
            raise ConfigError(str(error)) from error
        web = WebAdapter(
            core, settings.webchat, engine=engine, buckets=buckets, broadcast=broadcast
        )
        adapters.append(web)
        warn_if_web_chat_not_allowed(settings)
    if settings.slack.enabled:
        from adapters.slack.adapter import SlackAdapter

        adapters.append(SlackAdapter(settings.slack, core))
    if settings.feishu.enabled:
        from adapters.feishu.adapter import FeishuAdapter

        adapters.append(FeishuAdapter(settings.feishu, core))
    if settings.dingtalk.enabled:
        from adapters.dingtalk.adapter import DingTalkAdapter
        from bot.leader import DatabaseLeadership

        leadership = DatabaseLeadership(settings.storage.url)
        adapters.append(DingTalkAdapter(settings.dingtalk, core, leadership))
    return adapters


def warn_if_web_chat_not_allowed(settings: Settings) -> None:
    """With an allowlist set, the web chat answers only when "web:*" is on it: say so at start."""
    policy = settings.policy
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
