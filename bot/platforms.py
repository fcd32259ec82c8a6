"""The platform registry: every chat platform teambot serves, one line each.

Each platform package under `adapters/` exports one `adapters.platform.Platform` record from its
`__init__.py`; this is the only module outside `adapters/` that imports a platform package (an
import-linter contract in pyproject.toml holds it so). Settings take their platform sections
from here, the runtime builds the adapters, their document kinds and extra routes from here, and
the console its platform names. A new platform: its package, then one line in `PLATFORMS`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from adapters import dingtalk, feishu, slack, web
from adapters.platform import Documents, Platform

__all__ = ["PLATFORMS", "documents", "followups_off", "labels"]

PLATFORMS: tuple[Platform[Any], ...] = (
    web.PLATFORM,
    slack.PLATFORM,
    feishu.PLATFORM,
    dingtalk.PLATFORM,
)


def labels() -> dict[str, tuple[str, str]]:
    """platform name -> (中文, English), as the console shows it."""
    return {platform.name: platform.label for platform in PLATFORMS}


def documents(settings: BaseModel) -> list[Documents]:
    """The platforms' documents as knowledge (their source kinds), whether their chat is on or
    off: a Feishu wiki is read on the app's credentials without the Feishu chat."""
    return [p.documents(p.of(settings)) for p in PLATFORMS if p.documents is not None]


def followups_off(settings: BaseModel) -> list[str]:
    """The [policy] followups_off entries that older config files set in platform sections."""
    return [entry for p in PLATFORMS for entry in p.followups_off(p.of(settings))]
