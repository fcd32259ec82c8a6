"""The composition root: teambot built once from settings, and started and stopped as one.

A `Runtime` holds the parts, each made from its own settings section:

- the core (`bot.app.Application`: the App behind `engine.ports.Core`, opened by `open`);
- the platforms' adapters, built from the registry (`bot/platforms.py`) on first use, and their
  document kinds (one set for the process, so change events find what a listing saw);
- the jobs: knowledge refresh, handoff reminders, idle close, figures, the managed FAQ,
  retention and the recovery sweep;
- the HTTP routers the server mounts (`routers`, and the console).

`teambot serve` runs `start`/`stop` as the server's lifespan (`bot/server.py`); `ask`, `chat`
and `doctor` open the core alone (`open`/`close`) and, for `doctor`, the adapters' checks.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from adapters.base import Adapter
from adapters.platform import Platform, Wiring
from bot import platforms
from bot.app import App, Application
from bot.health import health_router
from bot.knowledge_ops.admin import Holder, admin_router
from bot.settings import ConfigError, Settings

if TYPE_CHECKING:
    from apscheduler.schedulers.asyncio import AsyncIOScheduler
    from fastapi import APIRouter

    from adapters.base import Leadership
    from bot.console.deps import Console
    from jobs.handover import Handover
    from knowledge import KnowledgeBase

log = logging.getLogger(__name__)

# An adapter of one's own beside the registry's (tests add a fake platform this way)
MakeAdapter = Callable[[Wiring], Adapter]


class Runtime:
    """teambot's running parts, built from `settings` (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        *,
        without: Collection[str] = (),
        extra: Sequence[MakeAdapter] = (),
    ) -> None:
        """`without`: platforms left out although on (doctor, for those missing credentials);
        `extra`: adapters of one's own beside the registry's."""
        self.settings = settings
        self.documents = platforms.documents(settings)
        self.core = Application(settings, self.documents)
        self.platforms: list[Platform[Any]] = [
            p for p in platforms.PLATFORMS if p.is_on(settings) and p.name not in without
        ]
        self.wiring = Wiring(
            core=self.core,
            database=self.core.engine,
            running=self.core.running,
            leadership=self._leadership,
            policy=settings.policy,
            database_url=settings.storage.url,
        )
        self._extra = extra
        self._holder: Holder | None = None
        self._scheduler: AsyncIOScheduler | None = None
        self._heartbeat: Handover | None = None
        self._started: list[Adapter] = []
        self._followed = False

    # -- the parts ------------------------------------------------------------------------

    @cached_property
    def adapters(self) -> list[Adapter]:
        """The enabled platforms' adapters, then the extra ones (built once, on first use)."""
        try:
            built = [p.build(p.of(self.settings), self.wiring) for p in self.platforms]
        except ValueError as error:  # settings that only meet at build (the web chat's events)
            raise ConfigError(str(error)) from error
        return built + [make(self.wiring) for make in self._extra]

    def routers(self) -> list[APIRouter]:
        """Every router the server mounts but the console's: admin, health and metrics, the
        adapters' webhooks and the platforms' extra routes (the web chat's page)."""
        found = [
            admin_router(self._knowledge, lambda: self._holder.token if self._holder else None),
            health_router(self.core.running, self.adapters),
        ]
        found += [router for adapter in self.adapters if (router := adapter.router()) is not None]
        for platform, adapter in zip(self.platforms, self.adapters, strict=False):
            if platform.routers is not None:
                found += platform.routers(platform.of(self.settings), adapter, self.wiring)
        return found

    @cached_property
    def console(self) -> Console | None:
        """The agents' console, when `[console] enabled`."""
        if not self.settings.console.enabled:
            return None
        from bot.console.deps import Console

        return Console(
            self.settings.console,
            self.core.running,
            self.adapters,
            web_chat=self.settings.server.web_chat,
            labels=platforms.labels(),
        )

    def _knowledge(self) -> KnowledgeBase | None:
        app = self.core.running()
        return app.knowledge if app is not None else None

    def _leadership(self) -> Leadership:
        from bot.leader import DatabaseLeadership

        return DatabaseLeadership(self.settings.storage.url)

    # -- the core alone: ask, chat, doctor ------------------------------------------------

    async def open(self, *, migrate: bool = True, seed: bool = True, warm: bool = True) -> App:
        """Migrate, open the knowledge base and the model client, wire the core (warm=False:
        the embedding model and jieba load at first use, for a one-question `ask`)."""
        return await self.core.open(migrate=migrate, seed=seed, warm=warm)

    async def close(self) -> None:
        await self.core.close()

    # -- the whole service: serve ---------------------------------------------------------

    @asynccontextmanager
    async def lifespan(self, _: object = None) -> AsyncIterator[None]:
        """`start`, then `stop` when the server shuts down: the server's lifespan."""
        await self.start()
        try:
            yield
        finally:
            await self.stop()

    async def start(self) -> None:
        """Hold the data folder (embedded), open the core, start the jobs and the adapters;
        whatever started is stopped again when a later step fails."""
        try:
            await self._hold_folder()
            app = await self.open(migrate=self.settings.server.migrate_on_start)
            app.knowledge.start_reembed()  # after a model change; the old index serves meanwhile
            self._scheduler = await self._start_jobs(app)
            # heartbeat first: every message the adapters take then names this replica
            self._heartbeat = self._handover(app)
            await self._heartbeat.start()
            await self._start_adapters()
            self._follow_documents(app.knowledge)
            # after the adapters started: the first sweep (right away) may post apologies
            self._schedule_recovery(app, self._scheduler)
        except BaseException:
            await self.stop()
            raise
        # Everything built so far (torch, the models, the indexes) lives as long as the
        # process: keep it out of the garbage collector's full passes, which otherwise walk
        # millions of objects and stall every answer for a few hundred ms.
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        """Stop what `start` started, in reverse order; safe after a partial start."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        if self._followed:
            self._followed = False
            for each in self.documents:
                await each.stop()
        for adapter in reversed(self._started):
            try:
                await adapter.stop()
            except Exception:  # one adapter failing to stop must not keep the rest open
                log.exception("adapter %s did not stop cleanly", adapter.name)
        self._started.clear()
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:  # after the answers in flight ended: none is left for others
            await heartbeat.stop()
        await self.core.close()
        holder, self._holder = self._holder, None
        if holder is not None:
            holder.release()

    async def _hold_folder(self) -> None:
        """Embedded, this server is the index's one writer: the CLI's knowledge commands come
        to it (bot/knowledge_ops/admin.py). Scaled out (a Chroma server) there is nothing to hold."""
        if not self.settings.knowledge.chroma_url:
            folder, port = self.settings.knowledge.persist_dir, self.settings.server.port
            self._holder = await asyncio.to_thread(Holder.take, folder, port)

    async def _start_adapters(self) -> None:
        for adapter in self.adapters:
            await adapter.start()
            self._started.append(adapter)
            log.info("adapter %s started", adapter.name)

    def _follow_documents(self, knowledge: KnowledgeBase) -> None:
        self._followed = True  # stopped at shutdown whether or not there was anything to follow
        for each in self.documents:
            each.follow(self._started, knowledge)

    async def _start_jobs(self, app: App) -> AsyncIOScheduler:
        """Knowledge refresh on each source's cron, SLA reminders, idle close, figures, the
        managed FAQ, retention."""
        from jobs.faq import ManagedFaq
        from jobs.handoff import HandoffJobs
        from jobs.retention import schedule_retention
        from jobs.scheduler import start_scheduler

        settings = self.settings
        scheduler = await start_scheduler(app.knowledge)
        faq = ManagedFaq(settings.console.faq_dir, settings.console.faq_collection)
        HandoffJobs(
            app.store, app.conversation, settings.escalation, self.adapters, app.knowledge, faq
        ).schedule(scheduler)
        schedule_retention(scheduler, app.store, settings.storage.retention_days)
        return scheduler

    def _handover(self, app: App) -> Handover:
        """This replica's heartbeat, which takes over the turns of replicas that died."""
        from engine.answer import ending
        from jobs.recovery import handover

        server = self.settings.server
        return handover(
            app.store,
            self.adapters,
            every=server.heartbeat_seconds,
            lapse=server.heartbeat_lapse_seconds,
            window=timedelta(minutes=server.recovery_window_minutes),
            answering=ending.IN_FLIGHT,
        )

    def _schedule_recovery(self, app: App, scheduler: AsyncIOScheduler) -> None:
        from engine.answer import ending
        from jobs.recovery import schedule_recovery

        server = self.settings.server
        schedule_recovery(
            scheduler,
            app.store,
            self.adapters,
            every=server.recovery_sweep_seconds,
            deadline=timedelta(seconds=answer_deadline(self.settings)),
            window=timedelta(minutes=server.recovery_window_minutes),
            answering=ending.IN_FLIGHT,  # this process's answers: they end by themselves
        )


def answer_deadline(settings: Settings) -> float:
    """Seconds after which a claimed question without a final message counts as lost: longer
    than any live answer takes (model timeout, plus retrieval and the web lookup)."""
    configured = settings.server.recovery_deadline_seconds
    return configured or settings.llm.total_timeout + 60
