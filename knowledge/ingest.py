"""Incremental refresh: read a source, re-embed only what changed, swap versions atomically.

For each document the catalog remembers its listing version, a content hash and its chunk ids.
A refresh:

1. lists the source completely through its kind's reader (`knowledge.sources`); a listing that
   fails removes nothing;
2. reads only the documents whose listing version changed (or is unknown); a document that
   cannot be read is recorded as failed and keeps its last good version;
3. skips documents whose content hash is unchanged;
4. chunks and embeds the changed ones, reusing the stored vector of every chunk whose text is
   unchanged, and writes the new chunks under new ids (invisible to queries);
5. commits the catalog and swaps the new chunks live in one step, then deletes the old chunks
   once no query still uses them;
6. removes the documents that disappeared (unless the listing failed);
7. gives documents whose audience changed (permissions, not text) their new one everywhere at
   once: catalog, store metadata and live index (`knowledge.audience`);
8. writes a report (added, changed, removed, unchanged, failed, duration) to the catalog.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from knowledge.catalog import Catalog, Indexed, Known, SourceBusyError, key_of
from knowledge.chunking import chunk_document, embed_text
from knowledge.config import KnowledgeSettings, SourceSettings
from knowledge.embedding import Embedder
from knowledge.errors import LoadError, SourceError
from knowledge.lexical import tokenize
from knowledge.live import LiveChunk, LiveIndex, drained
from knowledge.sources import DocumentRef, SourceKinds, SourceReader, builtin_kinds
from knowledge.types import Audience, Chunk, Document, RefreshReport
from knowledge.vectors import Metadata, VectorStore

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
"""Called as (phase, done, total); phases are "documents" and "embeddings"."""

# Bump when chunking changes so that every document is re-indexed once.
CHUNKER_VERSION = 2
_FLUSH_CHUNKS = 256  # embed, write and swap in groups of about this many chunks
WAIT_SECONDS = 120.0  # how long a change waits for another change to the same source


class _Cancelled(Exception):
    """The source is being removed: stop reading it."""


@dataclass(frozen=True, slots=True)
class _Same:
    """A listed document whose version matches the catalog's: not read at all. The audience
    its listing gave (None: none) still applies: permissions change without edits."""

    audience: Audience | None = None


Item = tuple[str, "Document | str | _Same", str]  # (uri, document | error | same, version stamp)


def chunk_id(source: str, uri: str, index: int, version: str = "") -> str:
    """Id of one chunk of one version of a document (a new version gets new ids)."""
    digest = hashlib.sha1(uri.encode()).hexdigest()[:12]
    return f"{source}:{digest}:{version[:8]}:{index}" if version else f"{source}:{digest}:{index}"


@dataclass
class _Pass:
    """One refresh's running state over a source's listing (`Ingestor._scan`)."""

    source: str
    collection: str
    known: dict[str, Known]  # the catalog's documents of the source before this pass
    report: RefreshReport
    progress: Progress | None
    seen: set[str] = field(default_factory=set)
    unchanged: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)  # same content, new listing version
    relabel: dict[str, Audience | None] = field(default_factory=dict)  # same, another audience
    group: list[tuple[Document, str, list[Chunk]]] = field(default_factory=list)
    embedded: list[int] = field(default_factory=lambda: [0, 0])  # done, total


class Ingestor:
    """Indexes sources into the vector store, the catalog and the live index.

    All methods are async; reading, parsing, tokenizing and embedding run in worker threads.
    """

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        settings: KnowledgeSettings,
        catalog: Catalog,
        live: LiveIndex,
        kinds: SourceKinds | None = None,
    ) -> None:
        self._kinds = kinds or builtin_kinds(settings.persist_dir.parent)
        self._embedder = embedder
        self._store = store
        self._settings = settings
        self._catalog = catalog
        self._live = live
        self._locks: dict[str, asyncio.Lock] = {}
        self._cancel: set[str] = set()
        self._stamps: dict[tuple[str, str], str] = {}  # (source, uri) -> version being indexed

    def content_hash(self, document: Document) -> str:
        """Hash of a document's text and of everything that shapes its chunks and vectors."""
        s = self._settings
        header = (
            f"v{CHUNKER_VERSION}|{s.chunk_tokens}|{s.chunk_overlap}|{self._embedder.model_name}|"
            f"{document.kind}|{document.title}|{document.url}\n"
        )
        return hashlib.sha256((header + document.text).encode()).hexdigest()

    @property
    def kinds(self) -> SourceKinds:
        """The source kinds this ingestor can read."""
        return self._kinds

    def _stamp(self, version: str, permissions: str = "source") -> str:
        """A listing version joined with everything that shapes chunks and vectors, so that a
        new chunker or model re-reads documents whose version did not change (and a switch to
        the platform's permissions re-reads them once, for their audiences)."""
        if not version:
            return ""
        s = self._settings
        return (
            f"{version[:170]}|v{CHUNKER_VERSION}:{s.chunk_tokens}:{s.chunk_overlap}:"
            + (hashlib.sha1(self._embedder.model_name.encode()).hexdigest()[:12])
            + ("|platform" if permissions == "platform" else "")
        )

    async def refresh(
        self,
        source: SourceSettings,
        *,
        progress: Progress | None = None,
        prune: bool = True,
        wait: bool = False,
    ) -> RefreshReport:
        """One run over a configured source; see the module docstring. With `wait`, a run
        already going on for the source is waited for instead of skipping this one."""
        total = [0]

        def on_total(n: int) -> None:
            total[0] = n
            _notify(progress, "documents", 0, n)

        try:
            reader = self._kinds.build(source)
        except ValueError as exc:  # an unknown kind or a wrong key: nothing can be read
            return RefreshReport(source=source.name, error=str(exc))
        try:
            return await self._run(
                source.name,
                source.kind,
                source.collection,
                self._listed(source, reader, on_total),
                progress,
                total,
                prune=prune,
                wait=wait,
            )
        finally:
            await reader.aclose()

    async def refresh_documents(
        self, source: SourceSettings, refs: Sequence[DocumentRef]
    ) -> RefreshReport:
        """Re-read some documents of a source now (a platform's change event): only these are
        read, nothing is listed or removed. Waits for a refresh of the source that is running."""
        reader = self._kinds.build(source)

        async def items() -> AsyncIterator[Item]:
            for ref in refs:
                stamp = self._stamp(ref.version)
                try:
                    document = await reader.read(ref)
                except LoadError as exc:
                    yield ref.uri, str(exc), stamp
                    continue
                yield ref.uri, _completed(document, ref), stamp

        try:
            return await self._run(
                source.name,
                source.kind,
                source.collection,
                items(),
                None,
                [len(refs)],
                prune=False,
                wait=True,
            )
        finally:
            await reader.aclose()

    async def ingest_path(
        self,
        path: Path | str,
        *,
        source: str,
        progress: Progress | None = None,
        prune: bool = True,
        collection: str | None = None,
    ) -> RefreshReport:
        """Index a folder (recursively) or one file, as source `source`.

        With `prune` (folders only), documents of `source` no longer there are removed.
        """
        root, exists, is_dir = await asyncio.to_thread(_inspect, Path(path))
        if not exists:
            raise FileNotFoundError(f"knowledge source {source!r}: {root} does not exist")
        settings = SourceSettings(
            name=source,
            kind="directory",
            location=str(root),
            collection=collection or self._settings.default_collection,
        )
        total = [0]

        def on_total(n: int) -> None:
            total[0] = n
            _notify(progress, "documents", 0, n)

        reader = self._kinds.build(settings)
        try:
            return await self._run(
                source,
                "directory",
                settings.collection,
                self._listed(settings, reader, on_total),
                progress,
                total,
                prune=prune and is_dir,
            )
        finally:
            await reader.aclose()

    async def ingest_documents(
        self,
        documents: Sequence[Document],
        *,
        source: str,
        collection: str | None = None,
        progress: Progress | None = None,
        wait: bool = False,
    ) -> RefreshReport:
        """Index already-loaded documents (nothing is removed)."""

        async def items() -> AsyncIterator[Item]:
            for document in documents:
                yield document.uri, document, ""

        return await self._run(
            source,
            None,  # the source keeps the kind it was registered with
            collection or self._settings.default_collection,
            items(),
            progress,
            [len(documents)],
            prune=False,
            wait=wait,
        )

    async def delete_document(self, uri: str, *, source: str) -> int:
        """Remove one document from the catalog, the live index and the store; its chunk count
        (0 when the source has no such document)."""
        async with self.exclusive(source):
            known = await self._catalog.known(source)
            if uri not in known:
                return 0
            await self._remove(source, [known[uri]])
            return len(known[uri].chunk_ids)

    async def delete_source(self, source: str) -> tuple[int, int]:
        """Remove a whole knowledge source: (documents, chunks) removed. A refresh of it in this
        process is cancelled; one elsewhere is waited for."""
        self._cancel.add(source)
        try:
            async with self.exclusive(source):
                documents, ids = await self._catalog.drop(source)
                await self._retire(ids)
                await self._store.delete_source(source)
                return documents, len(ids)
        finally:
            self._cancel.discard(source)

    @asynccontextmanager
    async def exclusive(self, source: str) -> AsyncIterator[datetime]:
        """Hold the source for one change: this process's lock, then the catalog's lease
        (waited for up to WAIT_SECONDS; SourceBusyError after that)."""
        lock = self._locks.setdefault(source, asyncio.Lock())
        async with lock:
            deadline = time.monotonic() + WAIT_SECONDS
            started = await self._catalog.acquire(source, run=False)
            while started is None:
                if time.monotonic() > deadline:
                    raise SourceBusyError(
                        f"knowledge source {source!r} is being changed by another process; "
                        "try again when its refresh has finished"
                    )
                await asyncio.sleep(0.25)
                started = await self._catalog.acquire(source, run=False)
            try:
                yield started
            finally:
                await self._catalog.unlock(source)

    async def _listed(
        self, source: SourceSettings, reader: SourceReader, on_total: Callable[[int], None]
    ) -> AsyncIterator[Item]:
        """The whole listing first (a failed listing raises `SourceError` before anything is
        read), then the unchanged documents, then the content of the others, a few at a time."""
        refs: dict[str, DocumentRef] = {}
        async for ref in reader.documents():
            refs.setdefault(ref.uri, ref)
        on_total(len(refs))
        known = await self._catalog.known(source.name)
        todo: list[tuple[DocumentRef, str]] = []
        for ref in refs.values():
            stamp = self._stamp(ref.version, source.permissions)
            old = known.get(ref.uri)
            if stamp and old and old.version == stamp and old.chunk_ids and old.status == "ok":
                yield ref.uri, _Same(ref.audience), stamp
            else:
                todo.append((ref, stamp))
        gate = asyncio.Semaphore(source.concurrency)

        async def one(ref: DocumentRef, stamp: str) -> Item:
            async with gate:
                try:
                    document = await reader.read(ref)
                except LoadError as exc:
                    return ref.uri, str(exc), stamp
                return ref.uri, _completed(document, ref), stamp

        tasks = [asyncio.create_task(one(ref, stamp)) for ref, stamp in todo]
        try:
            for task in asyncio.as_completed(tasks):
                yield await task
        finally:
            for task in tasks:
                task.cancel()

    async def _run(
        self,
        source: str,
        kind: str | None,
        collection: str,
        items: AsyncIterator[Item],
        progress: Progress | None,
        total: list[int],
        *,
        prune: bool,
        wait: bool = False,
    ) -> RefreshReport:
        clock = time.perf_counter()
        report = RefreshReport(source=source)
        lock = self._locks.setdefault(source, asyncio.Lock())
        if lock.locked() and not wait:
            report.skipped, report.error = True, "a refresh of this source is already running"
            return report
        async with lock:
            started = await self._catalog.acquire(source, kind, collection)
            deadline = time.monotonic() + (WAIT_SECONDS if wait else 0.0)
            while started is None and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                started = await self._catalog.acquire(source, kind, collection)
            if started is None:
                report.skipped = True
                report.error = "another process is refreshing this source"
                return report
            try:
                await self._scan(source, collection, items, progress, total, report, prune=prune)
            except _Cancelled:
                report.error = "cancelled: the source is being removed"
            except Exception as exc:  # a bug or a store failure: record it, never kill the job
                log.exception("refresh of %s failed", source)
                report.error = report.error or f"{type(exc).__name__}: {exc}"
            finally:
                report.seconds = time.perf_counter() - clock
                await self._catalog.release(source, started, report)
        log.info("knowledge refresh %s", report.summary())
        return report

    async def _scan(
        self,
        source: str,
        collection: str,
        items: AsyncIterator[Item],
        progress: Progress | None,
        total: list[int],
        report: RefreshReport,
        *,
        prune: bool,
    ) -> None:
        run = _Pass(source, collection, await self._catalog.known(source), report, progress)
        try:
            async for uri, item, stamp in items:
                if source in self._cancel:
                    raise _Cancelled
                run.seen.add(uri)
                await self._take(run, uri, item, stamp)
                _notify(progress, "documents", len(run.seen), max(total[0], len(run.seen)))
        except SourceError as exc:
            report.error = str(exc)
        if run.group:
            await self._flush(run)
        await self._settle(run, prune=prune)

    async def _take(self, run: _Pass, uri: str, item: Document | _Same | str, stamp: str) -> None:
        """One listed document: unchanged (perhaps with a new audience or listing version),
        failed, or chunked into the group the next flush embeds and indexes."""
        if isinstance(item, _Same):
            run.unchanged.append(uri)
            if item.audience is not None and item.audience != _own(run.known, uri):
                run.relabel[uri] = item.audience
            return
        if isinstance(item, str):
            run.report.failed[uri] = item
            return
        digest = self.content_hash(item)
        old = run.known.get(uri)
        if old is not None and old.content_hash == digest and old.chunk_ids:
            run.unchanged.append(uri)
            if stamp != old.version:
                run.versions[uri] = stamp
            if item.audience != old.audience:
                run.relabel[uri] = item.audience
            return
        chunks = await self._embedder.run(self._chunk, item)
        self._stamps[(run.source, uri)] = stamp
        run.group.append((item, digest, chunks))
        run.embedded[1] += len(chunks)
        if sum(len(c) for _, _, c in run.group) >= _FLUSH_CHUNKS:
            await self._flush(run)
            run.group = []

    async def _settle(self, run: _Pass, *, prune: bool) -> None:
        """After the listing: the unchanged stamped, audiences relabelled, failures recorded,
        and (when the whole listing came) what it no longer lists removed."""
        report, source = run.report, run.source
        report.unchanged = len(run.unchanged)
        await self._catalog.seen(source, run.unchanged, run.versions)
        await self._relabel(source, run.relabel)
        if report.failed:
            await self._catalog.failed(source, run.collection, report.failed)
        if prune and not report.error:
            gone = [run.known[uri] for uri in sorted(run.known.keys() - run.seen)]
            await self._remove(source, gone)
            report.removed = len(gone)
        if not report.error:
            await self._sweep(source)

    async def _flush(self, run: _Pass) -> None:
        """Embed, store and index one group of changed documents, then swap their chunks into
        the live lexical index and delete the chunks they replace."""
        group = run.group
        texts = [embed_text(doc.title, chunk) for doc, _, chunks in group for chunk in chunks]
        hashes = [self._chunk_hash(text) for text in texts]
        vectors = await self._vectors(texts, hashes, run.report)
        tokens = await asyncio.to_thread(lambda: [" ".join(tokenize(t)) for t in texts])
        run.embedded[0] += len(texts)
        _notify(run.progress, "embeddings", run.embedded[0], run.embedded[1])
        ids, metadatas, indexed, keys = self._rows(run, hashes, tokens)
        await self._store.upsert(
            ids, vectors, [c.text for _, _, cs in group for c in cs], metadatas
        )
        await self._catalog.commit(run.source, indexed)
        run.report.chunks += len(ids)
        await self._go_live(run, indexed, keys, set(ids))

    async def _vectors(
        self, texts: list[str], hashes: list[str], report: RefreshReport
    ) -> list[list[float]]:
        """A vector per text: any chunk with the same text (any document) lends its own, the
        rest are embedded, shortest first."""
        cached = await self._store.vectors(hashes)
        missing = sorted(
            {t for t, h in zip(texts, hashes, strict=True) if h not in cached}, key=len
        )
        fresh = dict(zip(missing, await self._embedder.embed(missing), strict=True))
        report.embedded += len(missing)
        return [cached.get(h) or fresh[t] for t, h in zip(texts, hashes, strict=True)]

    def _rows(
        self, run: _Pass, hashes: list[str], tokens: list[str]
    ) -> tuple[list[str], list[Metadata], list[Indexed], dict[str, str]]:
        """The group's chunk ids, store metadata, catalog rows and audience keys (by uri)."""
        ids: list[str] = []
        metadatas: list[Metadata] = []
        indexed: list[Indexed] = []
        keys: dict[str, str] = {}
        offset, source = 0, run.source
        for document, digest, chunks in run.group:
            own = [chunk_id(source, document.uri, c.index, digest) for c in chunks]
            ids.extend(own)
            keys[document.uri] = key = key_of(source, document.audience)
            metadatas.extend(
                _metadata(source, run.collection, document, digest, c, hashes[offset + n], key)
                for n, c in enumerate(chunks)
            )
            indexed.append(
                Indexed(
                    document.uri,
                    run.collection,
                    document.title,
                    digest,
                    tuple(own),
                    tuple(tokens[offset : offset + len(chunks)]),
                    document.modified_at,
                    self._stamps.pop((source, document.uri), ""),
                    document.audience,
                )
            )
            offset += len(chunks)
            known = run.known.get(document.uri)
            if known is not None and known.chunk_ids:
                run.report.changed += 1
            else:
                run.report.added += 1
        return ids, metadatas, indexed, keys

    async def _go_live(
        self, run: _Pass, indexed: list[Indexed], keys: dict[str, str], new: set[str]
    ) -> None:
        """Swap the group's chunks into the live index for the ones they replace."""
        known = run.known
        retired = [
            i for doc, _, _ in run.group if doc.uri in known for i in known[doc.uri].chunk_ids
        ]
        self._live.learn({keys[d.uri]: d.audience for d in indexed if d.audience is not None})
        old = await asyncio.to_thread(
            self._live.swap,
            (
                LiveChunk(i, run.collection, t.split(), keys[doc.uri])
                for doc in indexed
                for i, t in zip(doc.chunk_ids, doc.tokens, strict=True)
            ),
            retired,
        )
        for document, _, _ in run.group:
            known.pop(document.uri, None)  # now current: not "previous" for a later group
        await drained(old)
        await self._store.delete([i for i in retired if i not in new])

    async def _relabel(self, source: str, changes: dict[str, Audience | None]) -> None:
        """New audiences for documents whose text did not change: catalog, store metadata and
        live index (the same chunks, under the new key)."""
        if not changes:
            return
        own = {a for a in changes.values() if a is not None}
        self._live.learn({key_of(source, a): a for a in own})
        add: list[LiveChunk] = []
        for uri, audience in changes.items():
            key = key_of(source, audience)
            for collection, ids, tokens in await self._catalog.relabel(source, {uri: audience}):
                await self._store.relabel(ids, key)
                add.extend(
                    LiveChunk(i, collection, t.split(), key)
                    for i, t in zip(ids, tokens, strict=True)
                )
        await asyncio.to_thread(self._live.swap, add, [c.chunk_id for c in add])
        log.info("knowledge source %s: %d documents changed audience", source, len(changes))

    async def _remove(self, source: str, documents: Sequence[Known]) -> None:
        if not documents:
            return
        await self._catalog.commit(source, [], removed=[d.uri for d in documents])
        await self._retire([i for d in documents for i in d.chunk_ids])

    async def _retire(self, ids: Iterable[str]) -> None:
        ids = list(ids)
        old = await asyncio.to_thread(self._live.swap, (), ids)
        await drained(old)
        await self._store.delete(ids)

    async def _sweep(self, source: str) -> None:
        """Delete chunks the catalog does not reference (a crashed run's, the first cut's)."""
        wanted = {i for doc in (await self._catalog.known(source)).values() for i in doc.chunk_ids}
        orphans = sorted((await self._store.ids(source)) - wanted)
        if orphans:
            log.info("knowledge source %s: deleting %d unreferenced chunks", source, len(orphans))
            await self._store.delete(orphans)

    def _chunk_hash(self, text: str) -> str:
        return hashlib.sha1(f"{self._embedder.model_name}\n{text}".encode()).hexdigest()[:20]

    def _chunk(self, document: Document) -> list[Chunk]:
        return chunk_document(
            document.kind,
            document.text,
            count_tokens=self._embedder.count_tokens,
            chunk_tokens=self._settings.chunk_tokens,
            chunk_overlap=self._settings.chunk_overlap,
        )


def _own(known: dict[str, Known], uri: str) -> Audience | None:
    old = known.get(uri)
    return old.audience if old is not None else None


def _metadata(
    source: str,
    collection: str,
    document: Document,
    digest: str,
    chunk: Chunk,
    chunk_hash: str,
    audience: str,
) -> Metadata:
    return {
        "source": source,
        "collection": collection,
        "uri": document.uri,
        "url": document.url,
        "title": document.title,
        "section": chunk.section,
        "kind": document.kind,
        "modified_at": document.modified_at.isoformat() if document.modified_at else "",
        "content_hash": digest,
        "chunk_hash": chunk_hash,
        "chunk": chunk.index,
        "tokens": chunk.tokens,
        "audience": audience,
    }


def _completed(document: Document, ref: DocumentRef) -> Document:
    """The listing's uri, link and audience on the document the reader returned."""
    changes: dict[str, object] = {}
    if document.uri != ref.uri:
        changes["uri"] = ref.uri
    if not document.url and ref.url:
        changes["url"] = ref.url
    if document.audience is None and ref.audience is not None:
        changes["audience"] = ref.audience
    if document.modified_at is None and ref.modified_at is not None:
        changes["modified_at"] = ref.modified_at
    return replace(document, **changes) if changes else document  # type: ignore[arg-type]


def _inspect(path: Path) -> tuple[Path, bool, bool]:
    root = path.expanduser().resolve()
    return root, root.exists(), root.is_dir()


def _notify(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)
