"""Why the bot found what it found: one question's passages with their dense, lexical and fused
ranks and scores, beside the grounding floor (the console's "try a question").

Built only from `Retriever.retrieve` run once per mode, so it shows what retrieval itself does,
whatever its insides become.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from knowledge.retriever import Retriever
from knowledge.types import Passage


@dataclass(frozen=True, slots=True)
class Ranked:
    """One passage and where each side put it (None: that side did not propose it)."""

    passage: Passage
    dense_rank: int | None
    dense_score: float | None
    lexical_rank: int | None
    lexical_score: float | None
    fused_rank: int | None
    fused_score: float | None


@dataclass(frozen=True, slots=True)
class Explanation:
    query: str
    collections: tuple[str, ...]
    floor: float  # the grounding floor (knowledge.min_score)
    rows: tuple[Ranked, ...]  # the answer's passages first (fused order), then the rest

    @property
    def grounded(self) -> bool:
        """Whether the best fused passage reaches the floor (else the bot says it has nothing)."""
        best = self.rows[0].fused_score if self.rows else None
        return best is not None and best >= self.floor


async def explain(
    retriever: Retriever, query: str, collections: Sequence[str], *, candidates: int = 10
) -> Explanation:
    """Retrieve `query` densely, lexically and fused, and line the three rankings up."""
    dense, lexical, fused = await asyncio.gather(
        retriever.retrieve(query, k=candidates, collections=collections, mode="dense"),
        retriever.retrieve(query, k=candidates, collections=collections, mode="lexical"),
        retriever.retrieve(query, collections=collections),
    )
    sides = [_positions(found) for found in (dense, lexical, fused)]
    order: list[str] = []
    passages: dict[str, Passage] = {}
    for found in (fused, dense, lexical):
        for passage in found:
            if passage.chunk_id not in passages:
                passages[passage.chunk_id] = passage
                order.append(passage.chunk_id)
    rows = tuple(
        Ranked(
            passages[i],
            *sides[0].get(i, (None, None)),
            *sides[1].get(i, (None, None)),
            *sides[2].get(i, (None, None)),
        )
        for i in order
    )
    return Explanation(query, tuple(collections), retriever.min_score, rows)


def _positions(found: list[Passage]) -> dict[str, tuple[int | None, float | None]]:
    return {p.chunk_id: (rank, p.score) for rank, p in enumerate(found, start=1)}
