"""Change events for Feishu documents: which source listed a document, and the subscription
that makes Feishu push `drive.file.edit_v1` (and friends) for it over the long connection.

After every complete listing a Feishu reader tells the watch its documents; while the chat
adapter's long connection is up (`start`), each document is subscribed once per process
(`drive/v1/files/:token/subscribe`). An event then names a document token; `find` gives the
source and the listing entry to re-read (or delete) at once. After a restart the first
scheduled refresh (or `teambot refresh`) lists again and re-subscribes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace
from typing import TYPE_CHECKING

from adapters.feishu.documents.errors import DocsError

if TYPE_CHECKING:
    from adapters.feishu.documents.api import DocsApi
from knowledge.sources import DocumentRef

__all__ = ["Watch"]

log = logging.getLogger(__name__)


class Watch:
    """Feishu documents by their document token, for change events."""

    def __init__(self) -> None:
        self._documents: dict[str, tuple[str, DocumentRef]] = {}
        self._subscribed: set[str] = set()
        self._api: DocsApi | None = None
        self._pending: asyncio.Task[None] | None = None

    def start(self, api: DocsApi) -> None:
        """Subscribe documents from now on (the long connection that carries events is up)."""
        self._api = api
        self._subscribe_soon()

    async def stop(self) -> None:
        self._api = None
        if self._pending is not None:
            self._pending.cancel()
            await asyncio.gather(self._pending, return_exceptions=True)

    def listed(self, source: str, refs: list[DocumentRef]) -> None:
        """A source's complete listing: forget its documents that left, note the others."""
        for token, (owner, _) in list(self._documents.items()):
            if owner == source:
                del self._documents[token]
        for ref in refs:
            token = ref.meta.get("obj_token", ref.uri)
            self._documents[token] = (source, ref)
        self._subscribe_soon()

    def find(self, token: str) -> tuple[str, DocumentRef] | None:
        """(source, the listing's entry with its version cleared, so it is read) for a
        document token from an event; None when no Feishu source here listed it."""
        found = self._documents.get(token)
        if found is None:
            return None
        source, ref = found
        return source, replace(ref, version="")

    def _subscribe_soon(self) -> None:
        if self._api is None or (self._pending is not None and not self._pending.done()):
            return
        try:
            self._pending = asyncio.get_running_loop().create_task(self._subscribe())
        except RuntimeError:  # no loop (a listing from a worker thread): next time
            return

    async def _subscribe(self) -> None:
        while self._api is not None:
            todo = [t for t in self._documents if t not in self._subscribed]
            if not todo:
                return
            for token in todo:
                api = self._api
                if api is None:
                    return
                kind = self._documents.get(token, ("", DocumentRef(uri=token)))[1].meta.get(
                    "obj_type", "docx"
                )
                try:
                    await api.subscribe(token, kind)
                except DocsError as error:
                    log.warning("feishu: change events of %s not subscribed: %s", token, error)
                self._subscribed.add(token)
