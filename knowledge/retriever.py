"""Dense retrieval: embed the question, return the nearest chunks."""

from __future__ import annotations

from knowledge.config import KnowledgeSettings
from knowledge.embedding import Embedder
from knowledge.store import VectorStore
from knowledge.types import Passage


class Retriever:
    """Finds the passages closest to a question. `retrieve` is async and never blocks the loop."""

    def __init__(self, embedder: Embedder, store: VectorStore, settings: KnowledgeSettings) -> None:
        self._embedder = embedder
        self._store = store
        self._top_k = settings.top_k
        self._min_score = settings.min_score

    @property
    def min_score(self) -> float:
        """A passage scoring below this is not grounding; callers compare the best score."""
        return self._min_score

    @property
    def top_k(self) -> int:
        """How many passages `retrieve` returns by default."""
        return self._top_k

    async def retrieve(self, query: str, *, k: int | None = None) -> list[Passage]:
        """Up to `k` (default `top_k`) passages, best first; [] for an empty query."""
        query = query.strip()
        if not query or (k is not None and k < 1):
            return []
        [vector] = await self._embedder.embed([query])
        return await self._store.query(vector, self._top_k if k is None else k)
