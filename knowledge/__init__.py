"""The knowledge base: sources and loaders, chunking, embeddings, the vector store, the document
catalog, incremental refresh and hybrid retrieval.

Start with `KnowledgeBase.open(settings, database_url=...)`; the engine only needs
`kb.retriever` and `Passage`; jobs call `kb.refresh(name)`.
"""

from __future__ import annotations

import asyncio
import logging
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.audience import Reader
from knowledge.catalog import Catalog, CatalogBase, Registered, SourceBusyError
from knowledge.config import KnowledgeSettings, SourceSettings
from knowledge.embedding import Embedder, EmbeddingModelError, make_embedder
from knowledge.families import unread_share
from knowledge.files import FileSettings, FileStore, open_files
from knowledge.files.database import FilesBase
from knowledge.reembed import ModelStore, Reembedder, open_serving, reembed
from knowledge.registry import (
    ORIGINS,
    SAMPLE_SOURCE,
    UPLOADS_SOURCE,
    all_sources,
    has_real_sources,
    origin_of,
    overview,
)
from knowledge.rerank import Reranker
from knowledge.sources import SourceKind, SourceKinds, UnknownKindError, builtin_kinds
from knowledge.types import (
    Audience,
    Chunk,
    Document,
    IngestReport,
    Passage,
    RefreshReport,
    SourceStatus,
)
from knowledge.vectors import VectorStore

if TYPE_CHECKING:
    from collections.abc import Sequence

    from knowledge.ingest import Ingestor, Progress
    from knowledge.live import LiveIndex
    from knowledge.retriever import Retriever
    from knowledge.sources import DocumentRef

# The catalog's tables, for the migrations (bot/migrations)
METADATA = CatalogBase.metadata
FILES_METADATA = FilesBase.metadata  # the shared file store's table (knowledge/files/database.py)

# Loaded on first use (numpy, jieba, httpx behind them): `teambot sources` and the settings
# import this package without retrieving or ingesting anything.
_LAZY = {
    "Ingestor": "knowledge.ingest",
    "Progress": "knowledge.ingest",
    "Retriever": "knowledge.retriever",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'knowledge' has no attribute {name!r}")


__all__ = [
    "FILES_METADATA",
    "METADATA",
    "ORIGINS",
    "SAMPLE_SOURCE",
    "UPLOADS_SOURCE",
    "Audience",
    "CatalogBase",
    "Chunk",
    "Document",
    "Embedder",
    "EmbeddingModelError",
    "IngestReport",
    "Ingestor",
    "KnowledgeBase",
    "KnowledgeSettings",
    "Passage",
    "Progress",
    "Reader",
    "RefreshReport",
    "Retriever",
    "SourceBusyError",
    "SourceConflictError",
    "SourceKind",
    "SourceKinds",
    "SourceSettings",
    "SourceStatus",
    "UnknownKindError",
    "UnknownSourceError",
    "VectorStore",
    "builtin_kinds",
]

log = logging.getLogger(__name__)


class UnknownSourceError(KeyError):
    """A source name that is neither configured nor added at run time."""


class SourceConflictError(ValueError):
    """A change the source's origin does not allow (e.g. removing a config-file source)."""


class KnowledgeBase:
    """The embedder, store, catalog, live index, retriever and ingestor, opened together.

    Nothing here blocks the event loop: the model loads on the embedding thread (on first use,
    or at `warmup()`), chromadb runs in worker threads, and documents are parsed in worker
    processes under `settings.parsing` (`knowledge.parsing`).
    """

    def __init__(
        self,
        settings: KnowledgeSettings,
        embedder: Embedder,
        store: VectorStore,
        catalog: Catalog,
        live: LiveIndex,
        *,
        owns_embedder: bool = True,
        kinds: SourceKinds | None = None,
        files: FileStore | None = None,
    ) -> None:
        from knowledge.files.database import DatabaseFiles
        from knowledge.ingest import Ingestor
        from knowledge.retriever import Retriever
        from knowledge.sources.stored import STORED, stored_kind

        self.settings = settings
        self._owns_embedder = owns_embedder
        self.embedder = embedder
        self.store = store
        self.catalog = catalog
        self.live = live
        self.reranker = (
            Reranker(settings.rerank_model, device=settings.embedding_device)
            if settings.rerank_model
            else None
        )
        self.retriever = Retriever(embedder, store, settings, live, self.reranker)
        self.kinds = kinds or builtin_kinds(settings.persist_dir.parent)
        # uploads' bytes, shared by every replica (knowledge/files): the `stored` kind reads them
        self.files: FileStore = files or DatabaseFiles(catalog.engine)
        if STORED not in self.kinds:
            self.kinds.register(stored_kind(self.files))
        self.ingestor = Ingestor(embedder, store, settings, catalog, live, self.kinds)
        self._generation = -1
        self._registered: list[Registered] = []
        self.pending: Reembedder | None = None  # a model change waiting for its re-embed
        self._spare: Embedder | None = None  # the configured model while the old one serves
        self._reembedding: asyncio.Task[float] | None = None

    @classmethod
    async def open(
        cls,
        settings: KnowledgeSettings,
        *,
        embedder: Embedder | None = None,
        database_url: str | None = None,
        kinds: SourceKinds | None = None,
        files: FileSettings | None = None,
    ) -> KnowledgeBase:
        """Open the vector store and the catalog, and load the live index; the model loads lazily.

        `database_url` is teambot's database (migrated by Alembic); without it the catalog is a
        SQLite file beside the embedded store, created on first use (tests, scripts). Pass
        `embedder` to share one loaded model between knowledge bases; `kinds` are the source
        kinds it can read (default: the built-in ones).
        """
        from knowledge import parsing
        from knowledge.live import LiveIndex

        parsing.configure(settings.parsing)  # every parse in this process: these limits
        catalog = await open_catalog(settings, database_url)

        owns = embedder is None
        model = embedder or make_embedder(settings)

        async def has_chunks() -> bool:
            return bool(await catalog.live())

        serving = await open_serving(settings, model, has_chunks=has_chunks)
        kb = cls(
            settings,
            serving.embedder,
            serving.store,
            catalog,
            LiveIndex(),
            owns_embedder=owns,
            kinds=kinds,
            files=open_files(files or FileSettings(), catalog.engine),
        )
        kb.pending = serving.pending
        if serving.embedder is not model:  # the old model serves until the re-embed completes
            kb._spare = model if owns else None
            kb._owns_embedder = True
        await kb.reload()
        return kb

    @staticmethod
    def sample_path() -> Path:
        """The bundled sample helpdesk handbook (Markdown, HTML, an FAQ sheet; English and Chinese)."""
        return Path(__file__).resolve().parent / "sample"

    def sample_source(self) -> SourceSettings:
        return SourceSettings(
            name=SAMPLE_SOURCE,
            kind="directory",
            location=str(self.sample_path()),
            collection=self.settings.default_collection,
        )

    @property
    def sources(self) -> list[SourceSettings]:
        """The config file's sources, then those added at run time (as of the last reload)."""
        return all_sources(self.settings, self._registered)

    def origin(self, name: str) -> str:
        """config | runtime | upload | sample | faq (see `ORIGINS`)."""
        for entry in self._registered:
            if entry.name == name:
                return origin_of(entry, self.settings)
        return "config"

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        names = ", ".join(s.name for s in self.sources) or "none"
        raise UnknownSourceError(
            f"no knowledge source named {name!r} (known: {names}); add one with "
            "`teambot sources add NAME directory PATH`, `teambot ingest PATH` or a "
            "[[knowledge.sources]] entry in teambot.toml"
        )

    async def refresh(
        self, name: str, progress: Progress | None = None, *, wait: bool = False
    ) -> RefreshReport:
        """Refresh one source now (see `knowledge.ingest`). Uploads kept in one replica's folder
        (an older version's) are never pruned: a replica without the file must not remove it
        for everyone; in the shared file store (kind `stored`) every replica sees them all."""
        source = self.source(name)
        prune = self.origin(name) != "upload" or source.kind == "stored"
        return await self.ingestor.refresh(source, progress=progress, prune=prune, wait=wait)

    async def refresh_documents(self, name: str, refs: Sequence[DocumentRef]) -> RefreshReport:
        """Re-read these documents of one source now (a change event), nothing else."""
        return await self.ingestor.refresh_documents(self.source(name), refs)

    async def add_source(
        self, source: SourceSettings, origin: str = "runtime"
    ) -> tuple[int, int] | None:
        """Register a source added at run time (refresh it next); returns what the sample's
        stepping aside removed (documents, chunks), if it did."""
        if source.name in {s.name for s in self.settings.sources}:
            raise SourceConflictError(
                f"knowledge source {source.name!r} is defined in teambot.toml: change it there"
            )
        if source.name == SAMPLE_SOURCE:
            raise SourceConflictError(f"{SAMPLE_SOURCE!r} is the bundled sample's name")
        self.kinds.check(source)  # UnknownKindError (a ValueError) names the kinds and keys
        spec = source.model_dump(mode="json")
        await self.catalog.register(source.name, source.kind, source.collection, origin, spec)
        await self.reload()
        return await self.retire_sample() if origin in ("runtime", "upload") else None

    async def remove_source(self, name: str) -> tuple[int, int]:
        """Delete a source added at run time with its documents, chunks and vectors:
        (documents, chunks). A refresh of it running here is cancelled, one elsewhere waited for."""
        if name in {s.name for s in self.settings.sources}:
            raise SourceConflictError(
                f"knowledge source {name!r} is defined in teambot.toml: remove its "
                "[[knowledge.sources]] entry (it would come back at the next start)"
            )
        await self.reload()
        if name not in {r.name for r in self._registered}:
            self.source(name)  # raises UnknownSourceError with the known names
        removed = await self.ingestor.delete_source(name)
        await self.reload()
        return removed

    async def retire_sample(self) -> tuple[int, int] | None:
        """Remove the bundled sample from the index (documents, chunks); None when absent."""
        await self.reload()
        if SAMPLE_SOURCE not in {r.name for r in self._registered}:
            return None
        removed = await self.ingestor.delete_source(SAMPLE_SOURCE)
        await self.reload()
        log.info(
            "the bundled sample handbook stepped aside for your own knowledge: removed %d "
            "documents, %d chunks",
            *removed,
        )
        return removed

    async def settle_sample(self) -> tuple[int, int] | None:
        """At start: retire the sample when seed_sample is off or real sources exist."""
        await self.reload()
        if self.settings.seed_sample and not has_real_sources(self.settings, self._registered):
            return None
        return await self.retire_sample()

    async def statuses(self) -> list[SourceStatus]:
        """Configured and added sources first (never-run ones too), then orphans."""
        return await overview(self.settings, self.catalog)

    async def warmup(self) -> None:
        """Load the embedding model and jieba's dictionary now, not in the first question."""
        from knowledge.lexical import warmup as lexical_warmup

        await asyncio.gather(self.embedder.warmup(), asyncio.to_thread(lexical_warmup))

    async def reload(self) -> bool:
        """Bring the live index (and the source list) up to the catalog when another process
        changed it: one cheap query when nothing did; otherwise only the chunks that differ are
        swapped in or out, so the cost follows the change, not the size of the knowledge."""
        from knowledge.live import LiveChunk

        generation = await self.catalog.generation()
        if generation == self._generation:
            return False
        self._registered = await self.catalog.registered()
        self._audiences()
        if self._generation >= 0 and all(
            g in self.catalog.produced for g in range(self._generation + 1, generation + 1)
        ):  # only this process's changes, which it swapped in itself
            self._generation = generation
            return True
        self._audiences()
        entries = await self.catalog.chunk_map()
        self.live.learn({e.key: e.audience for e in entries if e.audience is not None})
        wanted = {i: (e.id, (e.collection, e.key)) for e in entries for i in e.chunk_ids}
        snapshot = self.live.current
        live = {i: (c, snapshot.keys.get(i, "")) for i, c in snapshot.chunks.items()}
        remove = [i for i, place in live.items() if i not in wanted or wanted[i][1] != place]
        changed = {doc for i, (doc, place) in wanted.items() if live.get(i) != place}
        found = await self.catalog.tokens(changed)
        add = [
            LiveChunk(chunk_id, wanted[chunk_id][1][0], tokens.split(), wanted[chunk_id][1][1])
            for ids, all_tokens in found.values()
            for chunk_id, tokens in zip(ids, all_tokens, strict=False)
            if chunk_id in wanted and live.get(chunk_id) != wanted[chunk_id][1]
        ]
        if add or remove:
            await asyncio.to_thread(self.live.swap, add, remove)
        self._generation = generation
        return True

    def _audiences(self) -> None:
        """Tell the live index each source's audience (a change in teambot.toml applies at
        once, without re-reading the documents)."""
        found = {}
        for source in self.sources:
            try:
                found[source.name] = source.own_audience()
            except ValueError:  # a run-time source saved before a stricter check: fail closed
                found[source.name] = Audience()
        self.live.set_sources(found)

    async def ensure_sample(self, progress: Progress | None = None) -> RefreshReport | None:
        """Index the sample handbook as source "sample" while there is no real source and
        nothing is indexed yet."""
        await self.reload()
        if (
            not self.settings.seed_sample
            or has_real_sources(self.settings, self._registered)
            or len(self.live) > 0
        ):
            return None
        sample = self.sample_source()
        await self.catalog.register(
            sample.name, sample.kind, sample.collection, "sample", sample.model_dump(mode="json")
        )
        await self.reload()
        return await self.refresh(SAMPLE_SOURCE, progress)

    async def language_warning(self, sample: int = 500) -> str:
        """A warning when most of the knowledge base is in a language the embedding model does
        not declare (doctor shows it); "" when the model reads it."""
        store = self.store
        texts = list((await store.page(0, sample))[1]) if isinstance(store, ModelStore) else []
        language, share = unread_share(self.embedder.profile, texts)
        if share <= 0.5:
            return ""
        names = {"zh": "Chinese", "en": "English"}
        return (
            f"{share:.0%} of the knowledge base is {names.get(language, language)}, which "
            f"{self.embedder.model_name} does not read: dense retrieval is off for it and only "
            "BM25 finds passages. Use a multilingual model (knowledge.embedding_model, e.g. "
            "multilingual-e5-small; see docs/retrieval.md) / 知识库大部分是中文，当前向量模型不支持中文，"
            "建议换用多语言模型"
        )

    def start_reembed(self) -> asyncio.Task[float] | None:
        """After a change of embedding model: re-embed every chunk with the new model in the
        background and switch to it when complete (see `knowledge.reembed`). The old vectors
        serve meanwhile. Returns the task, or None when nothing is pending."""
        if self.pending is None:
            return None
        if self._reembedding is None:
            self._reembedding = asyncio.create_task(reembed(self.pending, self._switch))
        return self._reembedding

    def _switch(self) -> None:
        """Serve from the re-embedded collection with the configured model, in one step."""
        pending, old = self.pending, self.embedder
        assert pending is not None
        self.store, self.embedder = pending.new, pending.embedder
        from knowledge.ingest import Ingestor

        self.retriever.use(pending.embedder, pending.new)
        self.ingestor = Ingestor(
            pending.embedder, pending.new, self.settings, self.catalog, self.live, self.kinds
        )
        self._owns_embedder = self._spare is not None  # whether open() built the new model
        self.pending, self._spare = None, None
        self._retired = old  # built by open() for the old collection: closed with the base

    async def close(self) -> None:
        """Release the store and catalog; an embedder passed to `open` stays usable."""
        if self._reembedding is not None and not self._reembedding.done():
            self._reembedding.cancel()
            await asyncio.gather(self._reembedding, return_exceptions=True)
        retired = getattr(self, "_retired", None)
        if retired is not None:
            await retired.close()
        if self._spare is not None:
            await self._spare.close()
        await self.store.close()
        await self.files.close()
        await self.catalog.close()
        if self.reranker is not None:
            await self.reranker.close()
        if self._owns_embedder:
            await self.embedder.close()


async def open_catalog(settings: KnowledgeSettings, database_url: str | None) -> Catalog:
    """teambot's database, or (standalone) a SQLite catalog beside the embedded store."""
    if database_url:
        return await Catalog.open(database_url)
    folder = await asyncio.to_thread(lambda: Path(settings.persist_dir).expanduser().resolve())
    catalog = await Catalog.open(f"sqlite+aiosqlite:///{folder / 'catalog.db'}", create=True)
    from knowledge.files.database import FilesBase

    async with catalog.engine.begin() as conn:
        await conn.run_sync(FilesBase.metadata.create_all)
    return catalog
