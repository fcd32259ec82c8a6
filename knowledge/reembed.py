"""One chromadb collection per embedding model, and the atomic switch from one to the next.

Vectors of two models are not comparable (nor, often, of the same size), so each model's chunks
live in their own collection, named after the model's fingerprint (the bundled model keeps the
plain `knowledge.collection` name). Each collection records the model that filled it.

When the configured model has no vectors yet but the knowledge base has chunks, the collection
that holds them keeps serving, with the model that made them, while `Reembedder.run` copies
every chunk into the new model's collection. Only when the copy is complete (a last pass picks
up chunks a refresh wrote meanwhile) do the retriever and the ingestor switch, in one step; the
old collection is then dropped. A query sees the old index or the new one, never a mix.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from knowledge.chunking import embed_text
from knowledge.config import KnowledgeSettings
from knowledge.embedding import Embedder, make_embedder
from knowledge.types import Chunk
from knowledge.vectors import VectorStore

log = logging.getLogger(__name__)

RECORD = "teambot_model"  # collection metadata key: the model's settings, as JSON
_PAGE = 500
_PASSES = 5  # catch-up passes before switching (each copies what a refresh wrote meanwhile)

Progress = Callable[[int, int], None]


def collection_name(base: str, fingerprint: str) -> str:
    """The collection of one model's vectors (chromadb names: 3-63 characters)."""
    return base if not fingerprint else f"{base[:52]}-{fingerprint}"


def model_record(embedder: Embedder, settings: KnowledgeSettings) -> dict[str, Any]:
    """The settings that rebuild `embedder` (the `[knowledge]` keys that shape its vectors)."""
    http = embedder.backend_name == "http"
    return {
        "embedding_backend": "http" if http else settings.embedding_backend,
        "embedding_model": embedder.model_name if http else settings.embedding_model,
        "embedding_url": settings.embedding_url if http else "",
        "embedding_query_prefix": embedder.profile.query_prefix,
        "embedding_passage_prefix": embedder.profile.passage_prefix,
        "embedding_languages": sorted(embedder.profile.languages),
        "embedding_input_type": settings.embedding_input_type if http else False,
        "embedding_int8": settings.embedding_int8 if embedder.backend_name == "onnx" else False,
    }


def recorded_settings(record: dict[str, Any] | None, settings: KnowledgeSettings) -> dict[str, Any]:
    """The `[knowledge]` keys that rebuild the model a collection records (no record: the
    bundled model). Records older than a key hold its old meaning (full precision). onnx and
    torch give the same vectors, so an old local collection is served by the configured local
    backend (onnx when the configured one is a server): the default install has no torch."""
    fields = KnowledgeSettings.model_fields
    update: dict[str, Any] = {"embedding_model": "", "embedding_int8": False}
    update.update({k: v for k, v in (record or {}).items() if k in fields})
    backend = update.get("embedding_backend", "onnx")
    if backend in ("onnx", "torch"):  # the same vectors: no torch needed to serve torch's index
        backend = settings.embedding_backend if settings.embedding_backend != "http" else "onnx"
    update["embedding_backend"] = backend
    return update


class ModelStore(VectorStore):
    """A `VectorStore` that knows its collection's name and model, and its siblings."""

    @property
    def name(self) -> str:
        return str(self._collection.name)

    async def record(self) -> dict[str, Any] | None:
        """The model that filled this collection, as recorded (None: not recorded)."""

        def read() -> dict[str, Any] | None:
            raw = (self._collection.metadata or {}).get(RECORD)
            return json.loads(raw) if isinstance(raw, str) else None

        return await asyncio.to_thread(read)

    async def set_record(self, record: dict[str, Any]) -> None:
        text = json.dumps(record, sort_keys=True)
        await asyncio.to_thread(lambda: self._collection.modify(metadata={RECORD: text}))

    async def siblings(self, base: str) -> list[tuple[str, int]]:
        """(name, chunks) of the other collections of this knowledge base."""

        def scan() -> list[tuple[str, int]]:
            found = []
            for item in self._client.list_collections():
                name = item if isinstance(item, str) else item.name
                if name != self.name and (name == base or name.startswith(f"{base[:52]}-")):
                    found.append((name, int(self._client.get_collection(name).count())))
            return found

        return await asyncio.to_thread(scan)

    async def page(
        self, offset: int, limit: int = _PAGE
    ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """One page of (ids, documents, metadatas), in chromadb's order."""

        def read() -> tuple[list[str], list[str], list[dict[str, Any]]]:
            got = self._collection.get(
                include=["documents", "metadatas"], limit=limit, offset=offset
            )
            return (
                list(got["ids"]),
                [d or "" for d in got.get("documents") or []],
                [dict(m or {}) for m in got.get("metadatas") or []],
            )

        return await asyncio.to_thread(read)

    async def all_ids(self) -> set[str]:
        def read() -> set[str]:
            found: set[str] = set()
            offset = 0
            while True:
                got = self._collection.get(include=[], limit=5000, offset=offset)
                found.update(got["ids"])
                if len(got["ids"]) < 5000:
                    return found
                offset += 5000

        return await asyncio.to_thread(read)

    async def sibling(self, name: str) -> ModelStore:
        """Another collection through the same client (one client per store folder)."""

        def get() -> ModelStore:
            collection = self._client.get_collection(name, embedding_function=None)
            return ModelStore(self._client, collection)

        return await asyncio.to_thread(get)

    async def drop(self) -> None:
        """Delete this collection (after a switch away from it)."""
        await asyncio.to_thread(self._client.delete_collection, self.name)


async def open_model_store(settings: KnowledgeSettings, name: str) -> ModelStore:
    store = await ModelStore.open(
        name, persist_dir=settings.persist_dir, chroma_url=settings.chroma_url
    )
    assert isinstance(store, ModelStore)
    return store


@dataclass
class Serving:
    """What the knowledge base opens with: the store and model that answer queries now, and
    the configured ones waiting to be filled (None when they are the same)."""

    store: ModelStore
    embedder: Embedder
    pending: Reembedder | None = None


async def open_serving(
    settings: KnowledgeSettings, configured: Embedder, *, has_chunks: Callable[[], Any]
) -> Serving:
    """Open the configured model's collection; when it is empty while another collection of
    this knowledge base holds chunks (`has_chunks()` tells whether the catalog has any), serve
    that one with its own model until a re-embed completes."""
    target = await open_model_store(
        settings, collection_name(settings.collection, configured.fingerprint)
    )
    record = model_record(configured, settings)
    found = await target.record()
    complete = found is None or bool(found.get("complete", True))
    if (complete and await target.count() > 0) or not await has_chunks():
        if found is None:
            await target.set_record({**record, "complete": True})
        return Serving(target, configured)
    for name, count in sorted(await target.siblings(settings.collection), key=lambda s: -s[1]):
        old = await target.sibling(name)
        old_record = await old.record()
        if count == 0 or (old_record is None and name != settings.collection):
            continue  # empty, or not ours
        if old_record is not None and not old_record.get("complete", True):
            continue  # an interrupted copy: never serve it
        model = make_embedder(settings.model_copy(update=recorded_settings(old_record, settings)))
        log.warning(
            "embedding model changed to %s: %d chunks are served with %s until they are "
            "re-embedded into collection %s",
            configured.model_name,
            count,
            model.model_name,
            target.name,
        )
        await target.set_record({**record, "complete": False})
        return Serving(old, model, Reembedder(old, target, configured, record))
    if found is not None and not complete:
        log.warning("collection %s was never completely embedded; serving it", target.name)
    await target.set_record({**record, "complete": True})
    return Serving(target, configured)


class Reembedder:
    """Copies every chunk of the serving collection into the configured model's."""

    def __init__(
        self, old: ModelStore, new: ModelStore, embedder: Embedder, record: dict[str, Any]
    ) -> None:
        self.old, self.new, self.embedder, self._record = old, new, embedder, record
        self.copied = 0

    async def copy(self, progress: Progress | None = None) -> int:
        """Copy what the new collection lacks and drop what the old one no longer has; returns
        how many chunks changed. Repeat until it returns 0."""
        old_ids, new_ids = await self.old.all_ids(), await self.new.all_ids()
        gone = sorted(new_ids - old_ids)
        if gone:
            await self.new.delete(gone)
        wanted = old_ids - new_ids
        done, offset = 0, 0
        while wanted:
            ids, texts, metas = await self.old.page(offset)
            if not ids:
                break
            offset += len(ids)
            rows = [(i, t, m) for i, t, m in zip(ids, texts, metas, strict=True) if i in wanted]
            if rows:
                await self._write(rows)
                done += len(rows)
                wanted -= {i for i, _, _ in rows}
                if progress is not None:
                    progress(done, done + len(wanted))
        self.copied += done
        return done + len(gone)

    async def complete(self) -> None:
        """Mark the new collection as complete (it may serve from now on)."""
        await self.new.set_record({**self._record, "complete": True, "completed_at": _now()})

    async def _write(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        inputs = [
            embed_text(str(m.get("title", "")), Chunk(t, str(m.get("section", "")), 0, 0))
            for _, t, m in rows
        ]
        vectors = await self.embedder.embed(inputs)
        metas = []
        for (_, _, meta), text in zip(rows, inputs, strict=True):
            # the ingestor's chunk hash, so that its refreshes reuse these vectors
            digest = hashlib.sha1(f"{self.embedder.model_name}\n{text}".encode()).hexdigest()[:20]
            metas.append({**meta, "chunk_hash": digest})
        await self.new.upsert([i for i, _, _ in rows], vectors, [t for _, t, _ in rows], metas)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


async def reembed(
    reembedder: Reembedder, switch: Callable[[], Any], progress: Progress | None = None
) -> float:
    """Copy until nothing is left, `switch()` to the new collection, copy what a refresh wrote
    during the switch, then drop the old collection. Returns the seconds it took."""
    started = time.perf_counter()
    for _ in range(_PASSES):
        if not await reembedder.copy(progress):
            break
    await reembedder.complete()
    switch()
    await reembedder.copy()  # anything an in-flight refresh wrote to the old one meanwhile
    await reembedder.old.drop()
    seconds = time.perf_counter() - started
    log.info(
        "re-embedded %d chunks with %s in %.1f s; collection %s now serves",
        reembedder.copied,
        reembedder.embedder.model_name,
        seconds,
        reembedder.new.name,
    )
    return seconds
