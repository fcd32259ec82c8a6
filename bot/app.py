"""Wiring: build the running parts from settings, and take them down again."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.feishu.documents.watch import Watch
from bot.db import upgrade_async
from bot.settings import ConfigError, Settings
from engine.config import PolicySettings
from knowledge import IngestReport, KnowledgeBase, SourceKinds, builtin_kinds

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from engine.conversation import Conversation
    from engine.llm import LLMClient
    from engine.messages import Answer, Inbound, ThreadKey
    from engine.policy import Policy
    from engine.ports import ReplyChannel
    from engine.store import ConversationStore
    from engine.web import WebLookup

log = logging.getLogger(__name__)
# Feishu documents listed in this process, for change events (one long connection a process)
FEISHU_WATCH = Watch()


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
    """`[policy]`, with the follow-up switches older config files set under `[slack]`
    (`follow_ups = false` → "slack:*", `followup_channels_off` → "slack:<channel>")."""
    slack = settings.slack
    off = list(settings.policy.followups_off)
    if not slack.follow_ups:
        off.append("slack:*")
    off += [f"slack:{channel}" for channel in slack.followup_channels_off]
    return settings.policy.model_copy(update={"followups_off": off})


def source_kinds(settings: Settings) -> SourceKinds:
    """Every kind of knowledge source this installation reads: the built-in ones, then those
    the platforms bring. Each configured source is checked against them (ConfigError)."""
    from adapters.dingtalk.documents import dingtalk_kinds
    from adapters.feishu.documents import feishu_kinds

    kinds = builtin_kinds(settings.knowledge.persist_dir.parent)
    for kind in (*feishu_kinds(settings.feishu, FEISHU_WATCH), *dingtalk_kinds(settings.dingtalk)):
        kinds.register(kind)
    for source in settings.knowledge.sources:
        try:
            kinds.check(source)
        except ValueError as error:
            raise ConfigError(f"[[knowledge.sources]] {error}") from error
    return kinds


async def open_knowledge(settings: Settings, *, migrate: bool = True) -> KnowledgeBase:
    """Migrate the database and open the knowledge base alone (the CLI's knowledge commands)."""
    if migrate:
        await upgrade_async(settings.storage.url)
    return await KnowledgeBase.open(
        settings.knowledge,
        database_url=settings.storage.url,
        kinds=source_kinds(settings),
        files=settings.files,
    )


async def build_app(settings: Settings, *, migrate: bool = True, seed: bool = True) -> App:
    """Migrate the database, open the knowledge base (seeding the sample if empty), wire the core."""
    # Imported here so that `open_knowledge` alone does not load the model client (openai).
    from engine.conversation import Conversation
    from engine.llm import LLMClient
    from engine.policy import Policy
    from engine.store import ConversationStore
    from engine.web import build_lookup
    from knowledge.files import FileStoreError
    from knowledge.uploads import adopt_folder

    knowledge = await open_knowledge(settings, migrate=migrate)
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

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._app: App | None = None

    async def open(self) -> App:
        self._app = await build_app(self.settings, migrate=self.settings.server.migrate_on_start)
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

    async def feedback(
        self,
        turn_id: int,
        user_id: str,
        value: str,
        comment: str = "",
        reply: ReplyChannel | None = None,
        *,
        chat: tuple[str, str, str] | None = None,
    ) -> None:
        await self.conversation.feedback(turn_id, user_id, value, comment, reply, chat=chat)

    async def escalate(
        self, key: ThreadKey, reply: ReplyChannel, *, trigger: str, requested_by: str = ""
    ) -> None:
        await self.conversation.escalate(key, reply, trigger=trigger, requested_by=requested_by)
