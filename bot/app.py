"""The core's wiring: the App (store, knowledge base, model client, policy, web lookup,
`Conversation`) built from settings and taken down again, and `Application`, the core the
adapters hold before it opens. `bot/runtime.py` puts it together with everything else."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.platform import Documents
from bot import platforms
from bot.db import upgrade_async
from bot.settings import ConfigError, Settings
from engine.config import PolicySettings
from knowledge import IngestReport, KnowledgeBase, SourceKinds, builtin_kinds

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from engine.conversation import Conversation
    from engine.llm import LLMClient
    from engine.messages import Answer, Click, Inbound
    from engine.policy import Policy
    from engine.ports import ReplyChannel, ReplyFor
    from engine.store.conversations import ConversationStore
    from engine.weblookup import WebLookup

log = logging.getLogger(__name__)


@dataclass
class App:
    """Everything a command or the server needs, each part built from its own section."""

    settings: Settings
    store: ConversationStore
    knowledge: KnowledgeBase
    llm: LLMClient | None
    conversation: Conversation
    seeded: IngestReport | None = None
    policy: Policy | None = None
    web: WebLookup | None = None

    async def close(self) -> None:
        if self.policy is not None:
            await self.policy.close()
        if self.llm is not None:
            await self.llm.close()
        if self.web is not None:
            await self.web.close()
        await self.knowledge.close()
        await self.store.close()


def policy_settings(settings: Settings) -> PolicySettings:
    """`[policy]`, with the follow-up switches older config files set in a platform's section
    (`[slack] follow_ups = false` → "slack:*", `followup_channels_off` → "slack:<channel>")."""
    off = [*settings.policy.followups_off, *platforms.followups_off(settings)]
    return settings.policy.model_copy(update={"followups_off": off})


def source_kinds(settings: Settings, documents: Sequence[Documents] | None = None) -> SourceKinds:
    """Every kind of knowledge source this installation reads: the built-in ones, then those
    the platforms' `documents` bring (the registry's when not given). Each configured source
    is checked against them (ConfigError)."""
    kinds = builtin_kinds(settings.knowledge.persist_dir.parent)
    found = platforms.documents(settings) if documents is None else documents
    for kind in (kind for each in found for kind in each.kinds()):
        kinds.register(kind)
    for source in settings.knowledge.sources:
        try:
            kinds.check(source)
        except ValueError as error:
            raise ConfigError(f"[[knowledge.sources]] {error}") from error
    return kinds


async def open_knowledge(
    settings: Settings, *, migrate: bool = True, documents: Sequence[Documents] | None = None
) -> KnowledgeBase:
    """Migrate the database and open the knowledge base alone (the CLI's knowledge commands)."""
    if migrate:
        await upgrade_async(settings.storage.url)
    kinds = source_kinds(settings, documents)
    return await KnowledgeBase.open(
        settings.knowledge,
        database_url=settings.storage.url,
        kinds=kinds,
        files=settings.files,
    )


async def build_app(
    settings: Settings,
    *,
    migrate: bool = True,
    seed: bool = True,
    warm: bool = True,
    documents: Sequence[Documents] | None = None,
) -> App:
    """Migrate the database, open the knowledge base (seeding the sample if empty), wire the core.
    warm=False leaves the embedding model and jieba to load at first use: a one-question `ask`
    then pays for jieba only when the question is Chinese."""
    # Imported here so that `open_knowledge` alone does not load the model client (openai).
    from engine.conversation import Conversation
    from engine.llm import LLMClient
    from engine.policy import Policy
    from engine.store.conversations import ConversationStore
    from engine.weblookup import build_lookup
    from knowledge.files import FileStoreError
    from knowledge.uploads import adopt_folder

    knowledge = await open_knowledge(settings, migrate=migrate, documents=documents)
    try:
        await adopt_folder(knowledge)  # uploads an older version kept on this replica's disk
    except FileStoreError as error:  # the store is down: uploads fail until it is back
        log.warning("uploads on this replica's disk not moved into the file store: %s", error)
    store = ConversationStore.from_url(
        settings.storage.url, echo=settings.storage.echo, pool_size=settings.storage.pool_size
    )
    if knowledge.files.name != "database":  # attachments' bytes go to the object store too
        store.attachments.files = store.upkeep.files = knowledge.files
    if seed:
        await knowledge.settle_sample()  # seed_sample off or real sources: the sample leaves
    seeded = await knowledge.ensure_sample() if seed else None
    if warm:
        await knowledge.warmup()  # load the embedding model now, not inside the first question
    if seeded is not None:
        log.info("indexed the bundled sample handbook: %d chunks", seeded.chunks)
    llm = LLMClient(settings.llm) if settings.llm.enabled else None
    policy = Policy(policy_settings(settings))
    web = build_lookup(settings.web, llm=llm)
    conversation = Conversation(
        settings.conversation,
        store=store,
        retriever=knowledge.retriever,
        llm=llm,
        instructions_as=settings.llm.instructions_as,
        policy=policy,
        escalation=settings.escalation,
        web=web,
        attachments=settings.attachments,
    )
    return App(settings, store, knowledge, llm, conversation, seeded, policy, web)


class NotOpen(RuntimeError):
    """The application was asked to answer before the server's lifespan opened it."""


class Application:
    """The server's application: built before the server (adapters and routes get it as their
    engine.ports.Core), opened in the lifespan (database, knowledge, model client), closed at
    shutdown. Until it is open, `running()` is None and /readyz says "starting"."""

    def __init__(self, settings: Settings, documents: Sequence[Documents] = ()) -> None:
        self.settings = settings
        self._documents = documents  # the platforms' document kinds, one set per process
        self._app: App | None = None

    async def open(self, *, migrate: bool = True, seed: bool = True, warm: bool = True) -> App:
        self._app = await build_app(
            self.settings, migrate=migrate, seed=seed, warm=warm, documents=self._documents
        )
        return self._app

    async def close(self) -> None:
        app, self._app = self._app, None
        if app is not None:
            await app.close()

    def running(self) -> App | None:
        return self._app

    def engine(self) -> AsyncEngine | None:
        """The database engine once open (the web chat's sessions use it), else None."""
        return self._app.store.engine if self._app is not None else None

    @property
    def conversation(self) -> Conversation:
        if self._app is None:
            raise NotOpen("teambot is still starting")
        return self._app.conversation

    # -- engine.ports.Core --------------------------------------------------------------------

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        return await self.conversation.handle(inbound, reply)

    async def clicked(self, click: Click, reply: ReplyChannel | ReplyFor | None = None) -> None:
        await self.conversation.clicked(click, reply)
