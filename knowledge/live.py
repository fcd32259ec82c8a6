"""What retrieval may see: the live chunk of every document, and the lexical index over them.

A refresh writes a changed document's new chunks to the vector store first (invisible: not
live), then swaps them in here in one step, and deletes the old chunks from the store only after
every query that began before the swap has finished. A query pins the snapshot it started with
and drops anything that snapshot does not hold, so it sees a document's old version or its new
one, never half of each.

Each live chunk also carries its document's audience key (`knowledge.audience`): "src:NAME"
for a document that follows its source's audience, "doc:HASH" for one with its own. The lexical
index groups chunks by (collection, audience key), so a query filters both at once, before
ranking; `admitted` names the keys a reader may see.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from knowledge.audience import EVERYONE, NOBODY, Reader, admits
from knowledge.lexical import LexicalIndex
from knowledge.types import Audience

_SEP = "\x1f"  # between collection and audience key in a lexical group


@dataclass(eq=False, slots=True)
class Snapshot:
    """An immutable view: chunk id -> collection (and -> audience key). `readers` counts
    queries pinning it."""

    chunks: dict[str, str]
    generation: int
    readers: int = 0
    collections: frozenset[str] = field(default_factory=frozenset)
    keys: dict[str, str] = field(default_factory=dict)  # chunk id -> audience key
    groups: dict[tuple[str, str], int] = field(default_factory=dict)  # (collection, key) -> n

    def visible(self, chunk_id: str, admitted: frozenset[str] | None) -> bool:
        """Whether a chunk's audience is among `admitted` (None = every audience)."""
        return admitted is None or self.keys.get(chunk_id, "") in admitted

    def share(self, collections: Iterable[str] | None, admitted: frozenset[str] | None) -> float:
        """Of the chunks of `collections` (None = all), the share a reader may see."""
        wanted = None if collections is None else set(collections)
        total = seen = 0
        for (collection, key), n in self.groups.items():
            if wanted is None or collection in wanted:
                total += n
                seen += n if admitted is None or key in admitted else 0
        return seen / total if total else 0.0


@dataclass(frozen=True, slots=True)
class LiveChunk:
    chunk_id: str
    collection: str
    tokens: Sequence[str]
    audience: str = ""  # the audience key; "" = an unnamed source's (everyone)


class LiveIndex:
    """The live chunk map and its BM25 index, swapped together."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lexical = LexicalIndex()
        self._current = Snapshot({}, 0)
        self._counts: Counter[tuple[str, str]] = Counter()  # live chunks per (collection, key)
        self._own: dict[str, Audience] = {}  # "doc:…" key -> the documents' own audience
        self._sources: dict[str, Audience] = {}  # source name -> its audience

    def set_sources(self, audiences: dict[str, Audience]) -> None:
        """The audience of every configured source ("src:NAME" keys); a source not named here
        (an ad hoc ingest, an orphan) keeps today's rule: everyone who sees the collection."""
        self._sources = dict(audiences)

    def learn(self, audiences: dict[str, Audience]) -> None:
        """Audiences of documents' own ("doc:…" keys), before their chunks are swapped in."""
        self._own.update(audiences)

    def audience(self, key: str) -> Audience:
        """The audience a key stands for; an unknown document key is nobody (fail closed)."""
        if key.startswith("doc:"):
            return self._own.get(key, NOBODY)
        return self._sources.get(key.removeprefix("src:"), EVERYONE)

    def admitted(self, snapshot: Snapshot, reader: Reader | None) -> frozenset[str] | None:
        """The audience keys of `snapshot` that `reader` may see; None when it may see every
        one (no reader: an operator's tool; or nothing withheld), so nothing need be filtered."""
        if reader is None:
            return None
        keys = {key for _, key in snapshot.groups}
        allowed = frozenset(k for k in keys if admits(self.audience(k), reader))
        return None if allowed == keys else allowed

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
            chunks, keys = dict(old.chunks), dict(old.keys)
            counts = self._counts
            for chunk_id in remove:
                collection = chunks.pop(chunk_id, None)
                if collection is not None:
                    _count(counts, (collection, keys.pop(chunk_id, "")), -1)
                self._lexical.remove(chunk_id)
            for chunk in add:
                if chunk.chunk_id in chunks:  # replaced: its old place no longer counts
                    place = (chunks[chunk.chunk_id], keys.get(chunk.chunk_id, ""))
                    _count(counts, place, -1)
                chunks[chunk.chunk_id] = chunk.collection
                keys[chunk.chunk_id] = chunk.audience
                _count(counts, (chunk.collection, chunk.audience), 1)
                group = f"{chunk.collection}{_SEP}{chunk.audience}"
                self._lexical.add(chunk.chunk_id, group, chunk.tokens)
            groups = dict(counts)
            self._current = Snapshot(
                chunks,
                old.generation + 1,
                collections=frozenset(c for c, _ in groups),
                keys=keys,
                groups=groups,
            )
            return old

    def adopt(self, other: LiveIndex) -> None:
        """Take over another index's content in one step (a full reload)."""
        with self._lock:
            self._lexical = other._lexical
            self._counts = Counter(other._counts)
            old = self._current
            self._own.update(other._own)
            self._current = Snapshot(
                other._current.chunks,
                old.generation + 1,
                collections=other._current.collections,
                keys=other._current.keys,
                groups=other._current.groups,
            )

    def lexical(
        self,
        tokens: Sequence[str],
        k: int,
        collections: Iterable[str] | None,
        admitted: frozenset[str] | None = None,
    ) -> list[tuple[str, float, float]]:
        """BM25 hits (id, score, relevance) among chunks of `collections` (None = all) whose
        audience key is `admitted` (None = any); blocking, a few ms at 100,000 chunks."""
        wanted = None if collections is None else set(collections)
        with self._lock:
            groups = [
                f"{collection}{_SEP}{key}"
                for collection, key in self._current.groups
                if (wanted is None or collection in wanted)
                and (admitted is None or key in admitted)
            ]
            return self._lexical.search(tokens, k, groups)


def _count(counts: Counter[tuple[str, str]], place: tuple[str, str], step: int) -> None:
    counts[place] += step
    if counts[place] <= 0:
        del counts[place]


async def drained(snapshot: Snapshot, *, poll: float = 0.005, limit: float = 30.0) -> None:
    """Wait until no query pins `snapshot` (or `limit` seconds pass: a stuck query must not
    hold a refresh forever; it then simply misses the deleted chunks)."""
    waited = 0.0
    while snapshot.readers and waited < limit:
        await asyncio.sleep(poll)
        waited += poll
