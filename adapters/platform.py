"""The record each platform package exports, so that one registry (`bot/platforms.py`) can serve it.

A platform is a package under `adapters/` whose `__init__.py` defines one `Platform`: its name
(the `Inbound.platform` value), the console's label, its settings section and class, what its
credentials lack, how to build its adapter, and optionally its document kinds, extra routes and
tables.
The service reads nothing else of the package: a new platform is one package plus one line in
the registry (docs/extending.md, "A chat platform").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, SecretStr

if TYPE_CHECKING:
    from fastapi import APIRouter
    from sqlalchemy import MetaData
    from sqlalchemy.ext.asyncio import AsyncEngine

    from adapters.base import Adapter, Core, Leadership
    from engine.config import PolicySettings
    from engine.store import ConversationStore
    from knowledge import KnowledgeBase
    from knowledge.sources import SourceKind

__all__ = ["Documents", "KindsOnly", "Platform", "Running", "Wiring", "unset"]

S = TypeVar("S", bound=BaseModel)


class Running(Protocol):
    """What an adapter's extra routes may read of the running service (bot.app.App has it)."""

    @property
    def store(self) -> ConversationStore: ...

    @property
    def knowledge(self) -> KnowledgeBase: ...

    @property
    def llm(self) -> object | None: ...


@dataclass(frozen=True)
class Wiring:
    """What the service gives a platform besides its own settings section."""

    core: Core
    # the database once the service has opened it (None before): the web chat's sessions
    database: Callable[[], AsyncEngine | None] = lambda: None
    # the running service once open (None before): the web chat's welcome and transcripts
    running: Callable[[], Running | None] = lambda: None
    # one holder across replicas for a connection the platform allows once (DingTalk Stream)
    leadership: Callable[[], Leadership | None] = lambda: None
    policy: PolicySettings | None = None  # rate buckets and allowlists (the web chat)
    database_url: str = ""  # which database: the web chat's events cross replicas through it


class Documents(Protocol):
    """A platform's documents as knowledge: its source kinds, and optionally change events."""

    def kinds(self) -> list[SourceKind]:
        """The source kinds this platform reads (registered beside the built-in ones)."""

    def follow(self, adapters: Sequence[Adapter], knowledge: KnowledgeBase) -> bool:
        """Re-read documents on the platform's change events, once the adapters run; False
        when there is nothing to follow (the platform's adapter is off)."""

    async def stop(self) -> None:
        """Stop following (at shutdown)."""


class KindsOnly:
    """Documents that are read on their schedule only: no change events."""

    def __init__(self, kinds: list[SourceKind]) -> None:
        self._kinds = kinds

    def kinds(self) -> list[SourceKind]:
        return list(self._kinds)

    def follow(self, adapters: Sequence[Adapter], knowledge: KnowledgeBase) -> bool:
        return False

    async def stop(self) -> None:
        return None


def _nothing_missing(section: Any) -> list[str]:
    return []


@dataclass(frozen=True)
class Platform(Generic[S]):
    """One chat platform, as the registry sees it."""

    name: str  # the platform of its Inbound messages and ThreadKeys: "slack"
    label: tuple[str, str]  # (中文, English), as the console shows it: ("飞书", "Feishu")
    section: str  # its settings section, [slack] (TEAMBOT_SLACK__…)
    settings: type[S]
    build: Callable[[S, Wiring], Adapter]  # imports the SDK: called only when the platform is on
    # what is not set that must be: "TEAMBOT_SLACK__BOT_TOKEN (xoxb-…)", one entry each
    missing: Callable[[S], list[str]] = _nothing_missing
    credentials_from: str = ""  # where an operator finds them (the developer console)
    # the switch that turns it on, (section, key): [slack] enabled unless said otherwise
    switch: tuple[str, str] | None = None
    # its document kinds, for platforms that have documents (made even when the chat is off)
    documents: Callable[[S], Documents] | None = None
    # routes beside the adapter's own (the web chat's page, welcome and transcripts)
    routers: Callable[[S, Adapter, Wiring], list[APIRouter]] | None = None
    # entries for [policy] followups_off that older config files set in this section
    followups_off: Callable[[S], list[str]] = field(default=_nothing_missing)
    metadata: MetaData | None = None  # its own tables, for the migrations (the web chat's)

    def of(self, settings: BaseModel) -> S:
        """This platform's section of the whole settings."""
        section = getattr(settings, self.section)
        assert isinstance(section, self.settings), f"[{self.section}] is not {self.settings}"
        return section

    def is_on(self, settings: BaseModel) -> bool:
        """Whether the settings turn this platform on."""
        section, key = self.switch or (self.section, "enabled")
        return bool(getattr(getattr(settings, section), key))


def unset(secret: SecretStr | None) -> bool:
    """A secret that is not set, or set to the empty string."""
    return secret is None or not secret.get_secret_value()
