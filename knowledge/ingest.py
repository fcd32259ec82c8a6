"""Incremental ingest: load, chunk, embed and store the documents of one knowledge source."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from knowledge.chunking import chunk_markdown, chunk_text, embed_text
from knowledge.config import KnowledgeSettings
from knowledge.embedding import Embedder
from knowledge.loaders import LoadError, document_uri, list_files, load_file
from knowledge.store import Metadata, VectorStore
from knowledge.types import Chunk, Document, IngestReport

Progress = Callable[[str, int, int], None]
"""Called as (phase, done, total); phases are "files", "chunks", "embeddings"."""

# Bump when chunking changes so that every document is re-indexed once.
CHUNKER_VERSION = 1
_FLUSH_CHUNKS = 256  # embed and write in groups of about this many chunks


def chunk_id(source: str, uri: str, index: int) -> str:
    """Stable id of one chunk: the same document and position always get the same id."""
    return f"{source}:{hashlib.sha1(uri.encode()).hexdigest()[:12]}:{index}"


class Ingestor:
    """Indexes documents into the vector store, skipping those whose content is unchanged.

    All methods are async; file reading, tokenizing and embedding run in worker threads.
    """

    def __init__(self, embedder: Embedder, store: VectorStore, settings: KnowledgeSettings) -> None:
        self._embedder = embedder
        self._store = store
        self._settings = settings

    def content_hash(self, document: Document) -> str:
        """Hash of a document's text and of the settings that shape its chunks."""
        s = self._settings
        header = f"v{CHUNKER_VERSION}|{s.chunk_tokens}|{s.chunk_overlap}|{document.title}\n"
        return hashlib.sha256((header + document.text).encode()).hexdigest()

    async def ingest_path(
        self,
        path: Path | str,
        *,
        source: str,
        progress: Progress | None = None,
        prune: bool = True,
    ) -> IngestReport:
        """Index a folder (recursively) or one file of Markdown and text files.

        With `prune`, documents of `source` under this folder that no longer exist are removed.
        Unreadable files are listed in `IngestReport.failed` and keep their previous chunks.
        """
        started = time.perf_counter()
        root, is_dir = await asyncio.to_thread(_resolve, Path(path), source)
        report = IngestReport()
        files = await asyncio.to_thread(list_files, root)
        known = await self._store.fingerprints(source)
        report.files_seen = len(files)
        _notify(progress, "files", 0, len(files))
        changed: list[tuple[Document, str]] = []
        seen: set[str] = set()
        for done, file in enumerate(files, start=1):
            uri = document_uri(file, root)
            seen.add(uri)
            try:
                document = await asyncio.to_thread(load_file, file, root)
            except LoadError as exc:
                report.failed[uri] = str(exc)
            else:
                digest = self.content_hash(document)
                if known.get(uri) == digest:
                    report.files_unchanged += 1
                else:
                    changed.append((document, digest))
            _notify(progress, "files", done, len(files))
        await self._index(changed, source, report, progress)
        if prune and is_dir:
            prefix = f"{root.name}/"
            for uri in sorted(known.keys() - seen):
                if uri.startswith(prefix):
                    await self._store.delete_document(source, uri)
                    report.files_removed += 1
        report.seconds = time.perf_counter() - started
        return report

    async def ingest_documents(
        self, documents: Sequence[Document], *, source: str, progress: Progress | None = None
    ) -> IngestReport:
        """Index already-loaded documents (for sources that are not folders)."""
        started = time.perf_counter()
        report = IngestReport(files_seen=len(documents))
        known = await self._store.fingerprints(source)
        changed: list[tuple[Document, str]] = []
        for document in documents:
            digest = self.content_hash(document)
            if known.get(document.uri) == digest:
                report.files_unchanged += 1
            else:
                changed.append((document, digest))
        await self._index(changed, source, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    async def delete_document(self, uri: str, *, source: str) -> None:
        """Remove one document's chunks from the index."""
        await self._store.delete_document(source, uri)

    async def delete_source(self, source: str) -> None:
        """Remove a whole knowledge source from the index."""
        await self._store.delete_source(source)

    async def _index(
        self,
        changed: list[tuple[Document, str]],
        source: str,
        report: IngestReport,
        progress: Progress | None,
    ) -> None:
        chunked: list[tuple[Document, str, list[Chunk]]] = []
        _notify(progress, "chunks", 0, len(changed))
        for done, (document, digest) in enumerate(changed, start=1):
            # Tokenizing uses the model's tokenizer, which lives on the embedding thread.
            chunks = await self._embedder.run(self._chunk, document)
            chunked.append((document, digest, chunks))
            _notify(progress, "chunks", done, len(changed))

        total = sum(len(chunks) for _, _, chunks in chunked)
        embedded = 0
        _notify(progress, "embeddings", 0, total)
        group: list[tuple[Document, str, list[Chunk]]] = []
        for item in chunked:
            group.append(item)
            if sum(len(c) for _, _, c in group) >= _FLUSH_CHUNKS or item is chunked[-1]:
                embedded = await self._write(group, source, embedded, total, progress)
                report.files_indexed += len(group)
                group = []
        report.chunks += total

    async def _write(
        self,
        group: list[tuple[Document, str, list[Chunk]]],
        source: str,
        embedded: int,
        total: int,
        progress: Progress | None,
    ) -> int:
        texts = [embed_text(doc.title, chunk) for doc, _, chunks in group for chunk in chunks]
        vectors: list[list[float]] = []
        step = 64
        for start in range(0, len(texts), step):
            vectors.extend(await self._embedder.embed(texts[start : start + step]))
            embedded += len(texts[start : start + step])
            _notify(progress, "embeddings", embedded, total)
        offset = 0
        for document, digest, chunks in group:
            own = vectors[offset : offset + len(chunks)]
            offset += len(chunks)
            # Not atomic yet: a query between these two calls misses this document.
            await self._store.delete_document(source, document.uri)
            if chunks:
                await self._store.upsert(
                    [chunk_id(source, document.uri, c.index) for c in chunks],
                    own,
                    [c.text for c in chunks],
                    [_metadata(source, document, digest, c) for c in chunks],
                )
        return embedded

    def _chunk(self, document: Document) -> list[Chunk]:
        split = chunk_markdown if document.kind == "markdown" else chunk_text
        return split(
            document.text,
            count_tokens=self._embedder.count_tokens,
            chunk_tokens=self._settings.chunk_tokens,
            chunk_overlap=self._settings.chunk_overlap,
        )


def _metadata(source: str, document: Document, digest: str, chunk: Chunk) -> Metadata:
    return {
        "source": source,
        "uri": document.uri,
        "title": document.title,
        "section": chunk.section,
        "kind": document.kind,
        "modified_at": document.modified_at.isoformat() if document.modified_at else "",
        "content_hash": digest,
        "chunk": chunk.index,
        "tokens": chunk.tokens,
    }


def _resolve(path: Path, source: str) -> tuple[Path, bool]:
    root = path.expanduser().resolve()
    if not root.exists():
        raise FileNotFoundError(f"knowledge source {source!r}: {root} does not exist")
    return root, root.is_dir()


def _notify(progress: Progress | None, phase: str, done: int, total: int) -> None:
    if progress is not None:
        progress(phase, done, total)
