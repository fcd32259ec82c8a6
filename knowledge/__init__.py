"""The knowledge base: loaders, chunking, embeddings, the vector store, retrieval and ingest.

Start with `KnowledgeBase.open(settings)`; the engine only needs `kb.retriever` and `Passage`.
"""

from __future__ import annotations

from pathlib import Path

from knowledge.config import KnowledgeSettings
from knowledge.embedding import Embedder, EmbeddingModelError
from knowledge.ingest import Ingestor, Progress
from knowledge.retriever import Retriever
from knowledge.store import VectorStore
from knowledge.types import Chunk, Document, IngestReport, Passage

__all__ = [
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
    "Retriever",
    "VectorStore",
]

SAMPLE_SOURCE = "sample"


class KnowledgeBase:
    """The embedder, store, retriever and ingestor of one collection, opened together.

    Nothing here blocks the event loop: the model loads on the embedding thread (on first use,
    or at `warmup()`), chromadb runs in worker threads.
    """

    def __init__(
        self,
        settings: KnowledgeSettings,
        embedder: Embedder,
        store: VectorStore,
        *,
        owns_embedder: bool = True,
    ) -> None:
        self.settings = settings
        self._owns_embedder = owns_embedder
        self.embedder = embedder
        self.store = store
        self.retriever = Retriever(embedder, store, settings)
        self.ingestor = Ingestor(embedder, store, settings)

    @classmethod
    async def open(
        cls, settings: KnowledgeSettings, *, embedder: Embedder | None = None
    ) -> KnowledgeBase:
        """Open the vector store (creating the collection when missing); the model loads lazily.

        Pass `embedder` to share one loaded model between knowledge bases (and tests).
        """
        store = await VectorStore.open(
            settings.collection, persist_dir=settings.persist_dir, chroma_url=settings.chroma_url
        )
        if embedder is not None:
            return cls(settings, embedder, store, owns_embedder=False)
        own = Embedder(settings.embedding_model, device=settings.embedding_device)
        return cls(settings, own, store)

    @staticmethod
    def sample_path() -> Path:
        """The bundled sample helpdesk handbook (Markdown, English and Chinese)."""
        return Path(__file__).resolve().parent / "sample"

    async def warmup(self) -> None:
        """Load the embedding model now (a few seconds) instead of on the first question."""
        await self.embedder.warmup()

    async def ensure_sample(self, progress: Progress | None = None) -> IngestReport | None:
        """Index the sample handbook as source "sample" when enabled and the collection is empty."""
        if not self.settings.seed_sample or await self.store.count() > 0:
            return None
        return await self.ingestor.ingest_path(
            self.sample_path(), source=SAMPLE_SOURCE, progress=progress
        )

    async def close(self) -> None:
        """Release the store; an embedder passed to `open` stays usable, ours is shut down."""
        await self.store.close()
        if self._owns_embedder:
            await self.embedder.close()
