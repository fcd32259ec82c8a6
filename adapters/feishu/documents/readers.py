"""The readers of the Feishu kinds: a wiki space (or a subtree of it), a drive folder, one doc.

Each lists its documents with a cheap version (the node's `obj_edit_time`, the file's
`modified_time`, the docx `revision_id`) and the audience its permissions give; the content is
read only when the ingestor asks (`Content.read`). A listing call that fails raises
`SourceError` with the fix in words, so a refresh then removes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from adapters.feishu.documents.errors import DocsError

if TYPE_CHECKING:
    from adapters.feishu.documents.api import DocsApi
from adapters.feishu.documents.content import Content, edit_time, skipped, versioned
from knowledge.errors import SourceError
from knowledge.sources import DocumentRef
from knowledge.types import Document

__all__ = ["DocReader", "DriveReader", "Listed", "WikiReader"]

log = logging.getLogger(__name__)
Listed = Callable[[list[DocumentRef]], None]  # told every complete listing (change events)


class _Reader:
    def __init__(self, content: Content, location: str, listed: Listed | None) -> None:
        self._content = content
        self._api: DocsApi = content.api
        self._location = location
        self._listed = listed
        self._gate = asyncio.Semaphore(8)  # permission look-ups at once
        self.skipped = 0

    async def read(self, ref: DocumentRef) -> Document:
        return await self._content.read(ref)

    async def aclose(self) -> None:
        await self._api.aclose()

    async def _refs(self, entries: list[tuple[dict[str, str], DocumentRef]]) -> list[DocumentRef]:
        """The listing's readable refs with their audiences (looked up a few at a time); the
        others are logged with the reason (sheets, bases, old docs, unreadable files)."""
        readable = []
        for meta, ref in entries:
            why = skipped(meta["obj_type"], ref.title)
            if why:
                self.skipped += 1
                log.info("feishu: %s (%s) skipped: %s", ref.title, ref.uri, why)
            else:
                readable.append((meta, ref))

        async def one(meta: dict[str, str], ref: DocumentRef) -> DocumentRef:
            async with self._gate:
                audience = await self._content.audience(meta["obj_token"], meta["obj_type"])
            return DocumentRef(
                uri=ref.uri,
                title=ref.title,
                url=ref.url,
                version=versioned(ref.version, audience),
                modified_at=ref.modified_at,
                audience=audience,
                meta=meta,
            )

        return list(await asyncio.gather(*(one(meta, ref) for meta, ref in readable)))

    def _done(self, refs: list[DocumentRef]) -> None:
        if self._listed is not None:
            self._listed(refs)


class WikiReader(_Reader):
    """Every node of a wiki space, or of the subtree under one node (location: a space id or a
    node token); docs and uploaded files are read, other objects are listed as skipped."""

    async def documents(self) -> AsyncIterator[DocumentRef]:
        site = await self._content.site()
        refs: list[DocumentRef] = []
        try:
            if self._location.isdigit():
                space, parents, top = self._location, [""], []
            else:
                node = await self._api.node(self._location)
                if not node:
                    raise SourceError(f"wiki node {self._location} not found")
                space, parents, top = str(node.get("space_id")), [], [node]
                if node.get("has_child"):
                    parents.append(str(node.get("node_token")))
            for ref in await self._refs([self._entry(n, site) for n in top]):
                refs.append(ref)
                yield ref
            while parents:
                parent = parents.pop(0)
                nodes = [n async for n in self._api.nodes(space, parent)]
                parents.extend(str(n["node_token"]) for n in nodes if n.get("has_child"))
                for ref in await self._refs([self._entry(n, site) for n in nodes]):
                    refs.append(ref)
                    yield ref
        except DocsError as error:
            raise SourceError(f"wiki {self._location}: {error}") from error
        self._done(refs)

    @staticmethod
    def _entry(node: dict[str, Any], site: str) -> tuple[dict[str, str], DocumentRef]:
        token = str(node.get("node_token") or "")
        obj_type = str(node.get("obj_type") or "")
        meta = {"obj_token": str(node.get("obj_token") or token), "obj_type": obj_type}
        edited = node.get("obj_edit_time")
        ref = DocumentRef(
            uri=token,
            title=str(node.get("title") or token),
            url=f"{site}/wiki/{token}",
            version=f"{obj_type}:{edited}" if edited else "",
            modified_at=edit_time(edited),
        )
        return meta, ref


class DriveReader(_Reader):
    """Every file under a drive folder, sub-folders included (location: a folder token)."""

    async def documents(self) -> AsyncIterator[DocumentRef]:
        site = await self._content.site()
        refs: list[DocumentRef] = []
        folders = [self._location]
        try:
            while folders:
                folder = folders.pop(0)
                entries = []
                async for item in self._api.files(folder):
                    kind = str(item.get("type") or "")
                    if kind == "folder":
                        folders.append(str(item.get("token")))
                    elif kind != "shortcut":
                        entries.append(self._entry(item, site))
                for ref in await self._refs(entries):
                    refs.append(ref)
                    yield ref
        except DocsError as error:
            raise SourceError(f"drive folder {self._location}: {error}") from error
        self._done(refs)

    @staticmethod
    def _entry(item: dict[str, Any], site: str) -> tuple[dict[str, str], DocumentRef]:
        token, kind = str(item.get("token") or ""), str(item.get("type") or "")
        modified = item.get("modified_time")
        ref = DocumentRef(
            uri=token,
            title=str(item.get("name") or token),
            url=str(item.get("url") or f"{site}/{'file' if kind == 'file' else kind}/{token}"),
            version=f"{kind}:{modified}" if modified else "",
            modified_at=edit_time(modified),
        )
        return {"obj_token": token, "obj_type": kind}, ref


class DocReader(_Reader):
    """One doc (location: docx/TOKEN or wiki/TOKEN, from a pasted link)."""

    async def documents(self) -> AsyncIterator[DocumentRef]:
        site = await self._content.site()
        kind, _, token = self._location.partition("/")
        try:
            if kind == "wiki":
                node = await self._api.node(token)
                if not node:
                    raise SourceError(f"wiki node {token} not found")
                entry = WikiReader._entry(node, site)
            else:
                document = await self._api.document(token)
                revision = document.get("revision_id")
                meta = {"obj_token": token, "obj_type": "docx"}
                entry = (
                    meta,
                    DocumentRef(
                        uri=token,
                        title=str(document.get("title") or token),
                        url=f"{site}/docx/{token}",
                        version=f"docx:{revision}" if revision else "",
                    ),
                )
            why = skipped(entry[0]["obj_type"], entry[1].title)
            if why:
                raise SourceError(f"doc {token}: {why}")
            (ref,) = await self._refs([entry])
        except DocsError as error:
            raise SourceError(f"doc {token}: {error}") from error
        self._done([ref])
        yield ref
