"""DingTalk: group @mentions and one-to-one messages over Stream mode (dingtalk-stream), AI
cards, and the `dingtalk_wiki` knowledge kind. `PLATFORM` is what the registry serves."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.dingtalk.config import DingTalkSettings
from adapters.platform import Documents, KindsOnly, Platform, Wiring, unset

if TYPE_CHECKING:
    from adapters.base import Adapter

__all__ = ["PLATFORM", "DingTalkSettings"]


def build(settings: DingTalkSettings, wiring: Wiring) -> Adapter:
    from adapters.dingtalk.adapter import DingTalkAdapter

    return DingTalkAdapter(settings, wiring.core, wiring.leadership())


def missing(dingtalk: DingTalkSettings) -> list[str]:
    names = ["[dingtalk] client_id (AppKey)"] if not dingtalk.client_id else []
    if unset(dingtalk.client_secret):
        names.append("TEAMBOT_DINGTALK__CLIENT_SECRET")
    return names


def documents(settings: DingTalkSettings) -> Documents:
    from adapters.dingtalk.documents import dingtalk_kinds

    return KindsOnly(dingtalk_kinds(settings))


PLATFORM = Platform(
    name="dingtalk",
    label=("钉钉", "DingTalk"),
    section="dingtalk",
    settings=DingTalkSettings,
    build=build,
    missing=missing,
    credentials_from="the DingTalk developer console (开发者后台 → 凭证与基础信息)",
    documents=documents,
)
