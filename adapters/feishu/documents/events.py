"""Platform change events to knowledge: a Feishu document edited, re-shared or deleted is
re-read (or removed) within seconds, instead of waiting for its source's schedule.

The Feishu adapter reports (change, document token) for subscribed documents; the watch
(`adapters.feishu.documents.watch`) knows which source listed that token. Documents are
subscribed after each complete listing in this process while the adapter runs.

`FeishuDocuments` is what the platform record (`adapters/feishu/__init__.py`) hands the service:
the Feishu kinds and the events, sharing one watch for the life of the process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from adapters.base import Adapter
from adapters.feishu.config import FeishuSettings
from adapters.feishu.documents.watch import Watch
from knowledge import KnowledgeBase
from knowledge.sources import DocumentRef, SourceKind

__all__ = ["DocumentEvents", "FeishuDocuments"]

log = logging.getLogger(__name__)


class DocumentEvents:
    """Follows Feishu document changes for the running server."""

    def __init__(self, knowledge: KnowledgeBase, watch: Watch) -> None:
        self._knowledge = knowledge
        self._watch = watch
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, config: FeishuSettings, adapters: Sequence[Adapter]) -> bool:
        """Listen to the Feishu adapter's document events; False when it does not run."""
        if not config.enabled:
            return False
        from adapters.feishu.adapter import FeishuAdapter
        from adapters.feishu.client import FeishuApi
        from adapters.feishu.documents.api import DocsApi

        feishu = next((a for a in adapters if isinstance(a, FeishuAdapter)), None)
        if feishu is None:
            return False

        secret = config.app_secret.get_secret_value() if config.app_secret else ""
        api = FeishuApi(config.app_id, secret, config.domain, config.request_timeout)
        feishu.documents_changed = self.changed
        self._watch.start(DocsApi(api))
        return True

    async def stop(self) -> None:
        await self._watch.stop()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def changed(self, change: str, token: str) -> None:
        """Called on the loop for each event: the work runs as its own task."""
        found = self._watch.find(token)
        if found is None:
            log.debug("feishu: change of %s, which no source here listed", token)
            return
        task = asyncio.get_running_loop().create_task(self._apply(change, *found))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _apply(self, change: str, source: str, ref: DocumentRef) -> None:
        try:
            if change == "deleted":
                chunks = await self._knowledge.ingestor.delete_document(ref.uri, source=source)
                log.info(
                    "feishu: %s deleted in Feishu: removed from %s (%d chunks)",
                    ref.title,
                    source,
                    chunks,
                )
                return
            if change == "shared":  # audiences come from the listing: list again, read only
                report = await self._knowledge.refresh(source)  # what changed
            else:
                report = await self._knowledge.refresh_documents(source, [ref])
            log.info("feishu: %s %s in Feishu: %s", ref.title, change, report.summary())
        except Exception:  # one event must never take the server down
            log.exception("feishu: change of %s in source %s could not be applied", ref.uri, source)


class FeishuDocuments:
    """The Feishu document kinds and their change events, sharing one watch (`Documents`)."""

    def __init__(self, config: FeishuSettings) -> None:
        self._config = config
        self._watch = Watch()
        self._events: DocumentEvents | None = None

    def kinds(self) -> list[SourceKind]:
        from adapters.feishu.documents import feishu_kinds

        return feishu_kinds(self._config, self._watch)

    def follow(self, adapters: Sequence[Adapter], knowledge: KnowledgeBase) -> bool:
        events = DocumentEvents(knowledge, self._watch)
        if not events.start(self._config, adapters):
            return False
        self._events = events
        log.info("feishu: document change events re-read their documents")
        return True

    async def stop(self) -> None:
        events, self._events = self._events, None
        await (events.stop() if events is not None else self._watch.stop())
