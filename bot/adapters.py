"""Which platform adapters run, built from their own settings sections (imported only when on)."""

from __future__ import annotations

from adapters.base import Adapter, Core
from adapters.web.adapter import WebAdapter
from bot.settings import Settings


def build_adapters(settings: Settings, core: Core) -> list[Adapter]:
    """The web chat (when on) plus every enabled platform adapter."""
    adapters: list[Adapter] = []
    if settings.server.web_chat:
        adapters.append(WebAdapter(core))
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
