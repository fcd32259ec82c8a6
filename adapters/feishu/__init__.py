"""Feishu / Lark: group @mentions and one-to-one messages over the long connection or webhooks
(lark-oapi), streamed cards, and the Feishu document kinds with their change events.
`PLATFORM` is what the registry serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.feishu.config import FeishuSettings
from adapters.platform import Documents, Platform, Wiring, unset

if TYPE_CHECKING:
    from adapters.base import Adapter

__all__ = ["PLATFORM", "FeishuSettings"]


def build(settings: FeishuSettings, wiring: Wiring) -> Adapter:
    from adapters.feishu.adapter import FeishuAdapter

    return FeishuAdapter(settings, wiring.core)


def missing(feishu: FeishuSettings) -> list[str]:
    names = ["[feishu] app_id (cli_…)"] if not feishu.app_id else []
    if unset(feishu.app_secret):
        names.append("TEAMBOT_FEISHU__APP_SECRET")
    if feishu.mode == "webhook" and unset(feishu.verification_token):
        names.append("TEAMBOT_FEISHU__VERIFICATION_TOKEN (webhook mode)")
    return names


def documents(settings: FeishuSettings) -> Documents:
    from adapters.feishu.documents.events import FeishuDocuments

    return FeishuDocuments(settings)


PLATFORM = Platform(
    name="feishu",
    label=("飞书", "Feishu"),
    section="feishu",
    settings=FeishuSettings,
    build=build,
    missing=missing,
    credentials_from="the Feishu/Lark developer console (凭证与基础信息 / 事件与回调 → 加密策略)",
    documents=documents,
)
