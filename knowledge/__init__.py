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

from knowledge.catalog import Catalog, CatalogBase
from knowledge.config import KnowledgeSettings, SourceSettings
from knowledge.embedding import Embedder, EmbeddingModelError, build_embedder
from knowledge.families import unread_share
from knowledge.reembed import ModelStore, Reembedder, open_serving, reembed
from knowledge.rerank import Reranker
from knowledge.store import VectorStore
from knowledge.types import (
    Chunk,
    Document,
    IngestReport,
    Passage,
    RefreshReport,
    SourceStatus,
)

if TYPE_CHECKING:
    from knowledge.ingest import Ingestor, Progress
    from knowledge.live import LiveIndex
    from knowledge.retriever import Retriever

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
    "RefreshReport",
    "Retriever",
    "SourceSettings",
    "SourceStatus",
    "VectorStore",
]

SAMPLE_SOURCE = "sample"
log = logging.getLogger(__name__)


class UnknownSourceError(KeyError):
    """A source name that is not configured."""


class KnowledgeBase:
    """The embedder, store, catalog, live index, retriever and ingestor, opened together.

    Nothing here blocks the event loop: the model loads on the embedding thread (on first use,
    or at `warmup()`), chromadb and parsing run in worker threads.
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
    ) -> None:
        from knowledge.ingest import Ingestor
        from knowledge.retriever import Retriever

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
        self.ingestor = Ingestor(embedder, store, settings, catalog, live)
        self._generation = -1
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
    ) -> KnowledgeBase:
        """Open the vector store and the catalog, and load the live index; the model loads lazily.

        `database_url` is teambot's database (migrated by Alembic); without it the catalog is a
        SQLite file beside the embedded store, created on first use (tests, scripts). Pass
        `embedder` to share one loaded model between knowledge bases.
        """
        if database_url:
            catalog = await Catalog.open(database_url)
        else:
            folder = await asyncio.to_thread(
                lambda: Path(settings.persist_dir).expanduser().resolve()
            )
            path = folder / "catalog.db"
            catalog = await Catalog.open(f"sqlite+aiosqlite:///{path}", create=True)
        from knowledge.live import LiveIndex

        owns = embedder is None
        model = embedder or build_embedder(settings)

        async def has_chunks() -> bool:
            return bool(await catalog.live())

        serving = await open_serving(settings, model, has_chunks=has_chunks)
        kb = cls(
            settings, serving.embedder, serving.store, catalog, LiveIndex(), owns_embedder=owns
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

    @property
    def sources(self) -> list[SourceSettings]:
        """The configured sources; with none, the bundled sample (when seed_sample is on)."""
        if self.settings.sources or not self.settings.seed_sample:
            return list(self.settings.sources)
        return [
            SourceSettings(
                name=SAMPLE_SOURCE,
                kind="directory",
                location=str(self.sample_path()),
                collection=self.settings.default_collection,
            )
        ]

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        names = ", ".join(s.name for s in self.sources) or "none"
        raise UnknownSourceError(
            f"no knowledge source named {name!r} (configured: {names}); add a "
            "[[knowledge.sources]] entry to teambot.toml"
        )

    async def refresh(self, name: str, progress: Progress | None = None) -> RefreshReport:
        """Refresh one configured source now (see `knowledge.ingest`)."""
        return await self.ingestor.refresh(self.source(name), progress=progress)

    async def statuses(self) -> list[SourceStatus]:
        """Configured sources first (never-run ones too), then sources only the catalog knows."""
        known = await self.catalog.statuses()
        rows = []
        for source in self.sources:
            found = known.pop(source.name, None)
            rows.append(
                found
                or SourceStatus(source.name, source.kind, source.collection, 0, 0, 0, None, "never")
            )
        from dataclasses import replace

        rows.extend(replace(s, configured=False) for s in known.values())
        return rows

    async def warmup(self) -> None:
        """Load the embedding model and jieba's dictionary now, not in the first question."""
        from knowledge.lexical import warmup as lexical_warmup

        await asyncio.gather(self.embedder.warmup(), asyncio.to_thread(lexical_warmup))

    async def reload(self) -> bool:
        """Rebuild the live index from the catalog when another process changed it."""
        from knowledge.live import LiveChunk, LiveIndex

        generation = await self.catalog.generation()
        if generation == self._generation:
            return False
        documents = await self.catalog.live()
        chunks = [
            LiveChunk(chunk_id, doc.collection, tokens.split())
            for doc in documents
            for chunk_id, tokens in zip(doc.chunk_ids, doc.tokens, strict=False)
        ]
        fresh = LiveIndex()
        await asyncio.to_thread(fresh.swap, chunks, ())
        self.live.adopt(fresh)
        self._generation = generation
        return True

    async def ensure_sample(self, progress: Progress | None = None) -> RefreshReport | None:
        """Index the sample handbook as source "sample" when it is the source and nothing is
        indexed yet."""
        if self.settings.sources or not self.settings.seed_sample or len(self.live) > 0:
            return None
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
            pending.embedder, pending.new, self.settings, self.catalog, self.live
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
        await self.catalog.close()
        if self.reranker is not None:
            await self.reranker.close()
        if self._owns_embedder:
            await self.embedder.close()
