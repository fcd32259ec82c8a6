"""Optional cross-encoder rerank of the fused candidates (off unless knowledge.rerank_model)."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from knowledge.embedding.base import EmbeddingModelError
from knowledge.types import Passage


class Reranker:
    """Reorders passages by a sentence-transformers CrossEncoder's score of (question, passage).

    Scores stay the retrieval's calibrated relevance: the floor means the same with or without
    a reranker. The model loads on first use, on its own worker thread.
    """

    def __init__(self, model: str, *, device: str = "cpu") -> None:
        self._name = model
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teambot-rerank")

    async def rerank(self, query: str, passages: list[Passage]) -> list[Passage]:
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(self._executor, self._score, query, passages)
        order = sorted(range(len(passages)), key=lambda i: -scores[i])
        best = max(p.score for p in passages)
        # The new first passage speaks for the list: it may claim the best relevance found.
        return [replace(passages[order[0]], score=best)] + [passages[i] for i in order[1:]]

    def _score(self, query: str, passages: list[Passage]) -> list[float]:
        with self._lock:
            if self._model is None:
                try:
                    from sentence_transformers import CrossEncoder
                except ImportError as exc:
                    raise EmbeddingModelError(
                        f"knowledge.rerank_model = {self._name!r} needs torch and "
                        "sentence-transformers: install the CPU build of torch, then "
                        "`pip install 'teambot[torch]'`; or set rerank_model = ''"
                    ) from exc

                self._model = CrossEncoder(self._name, device=self._device)
        pairs = [(query, f"{p.title} > {p.section}\n{p.text}") for p in passages]
        return [float(s) for s in self._model.predict(pairs, show_progress_bar=False)]

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
