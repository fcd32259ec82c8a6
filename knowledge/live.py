"""What retrieval may see: the live chunk of every document, and the lexical index over them.

A refresh writes a changed document's new chunks to the vector store first (invisible: not
live), then swaps them in here in one step, and deletes the old chunks from the store only after
every query that began before the swap has finished. A query pins the snapshot it started with
and drops anything that snapshot does not hold, so it sees a document's old version or its new
one, never half of each.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from knowledge.lexical import LexicalIndex


@dataclass(eq=False, slots=True)
class Snapshot:
    """An immutable view: chunk id -> collection. `readers` counts queries pinning it."""

    chunks: dict[str, str]
    generation: int
    readers: int = 0
    collections: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True)
class LiveChunk:
    chunk_id: str
    collection: str
    tokens: Sequence[str]


class LiveIndex:
    """The live chunk map and its BM25 index, swapped together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lexical = LexicalIndex()
        self._current = Snapshot({}, 0)

    @property
    def current(self) -> Snapshot:
        return self._current

    def __len__(self) -> int:
        return len(self._current.chunks)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[Snapshot]:
        """Pin the current snapshot for one query."""
        snapshot = self._current
        snapshot.readers += 1
        try:
            yield snapshot
        finally:
            snapshot.readers -= 1

    def swap(self, add: Iterable[LiveChunk], remove: Iterable[str]) -> Snapshot:
        """Apply one change set in one step (blocking; call it on a worker thread for big sets).

        Returns the replaced snapshot: wait for `drained` on it before deleting removed chunks.
        """
        with self._lock:
            old = self._current
            chunks = dict(old.chunks)
            for chunk_id in remove:
                chunks.pop(chunk_id, None)
                self._lexical.remove(chunk_id)
            for chunk in add:
                chunks[chunk.chunk_id] = chunk.collection
                self._lexical.add(chunk.chunk_id, chunk.collection, chunk.tokens)
            self._current = Snapshot(
                chunks, old.generation + 1, collections=frozenset(chunks.values())
            )
            return old

    def adopt(self, other: LiveIndex) -> None:
        """Take over another index's content in one step (a full reload)."""
        with self._lock:
            self._lexical = other._lexical
            old = self._current
            self._current = Snapshot(
                other._current.chunks,
                old.generation + 1,
                collections=other._current.collections,
            )

    def lexical(
        self, tokens: Sequence[str], k: int, collections: Iterable[str] | None
    ) -> list[tuple[str, float, float]]:
        """BM25 hits (id, score, relevance); blocking, a few ms at 100,000 chunks."""
        with self._lock:
            return self._lexical.search(tokens, k, collections)


async def drained(snapshot: Snapshot, *, poll: float = 0.005, limit: float = 30.0) -> None:
    """Wait until no query pins `snapshot` (or `limit` seconds pass: a stuck query must not
    hold a refresh forever; it then simply misses the deleted chunks)."""
    waited = 0.0
    while snapshot.readers and waited < limit:
        await asyncio.sleep(poll)
        waited += poll
