"""Hybrid retrieval: dense (embeddings in chromadb) and lexical (BM25), fused per question.

Each retriever proposes `candidates` chunks of the chat's collections; `knowledge.fusion` orders
their union from what the question itself shows (how far the embedding model reads it, how much
of its idf mass the best BM25 hits cover, each chunk's cosine); near-duplicate passages collapse
into the better-ranked one; an optional cross-encoder reorders the head; at most `per_document`
chunks of one document come before every other document's first ones; the first `k` are
returned. Fusion must never be worse than its better side, whichever way the question is asked
(measured on every evaluation set: docs/retrieval.md).

Audiences (`knowledge.audience`): with a `reader`, both sides search only chunks whose audience
admits the reader (chromadb by a metadata filter or, for a broad audience, a wider unfiltered
search; BM25 by its groups) and a last check against
the pinned snapshot drops anything else, so neither side can return a passage the reader may
not see. Without a reader (an operator's tool: eval, explain) every audience is searched.

Scores are calibrated relevance in [0, 1] (a Chinese question's rescaled so that `min_score_zh`
lands on `min_score`: the floor is calibrated per language): the larger of the cosine similarity (scaled down
by how much of the question the embedding model can read at all: all-MiniLM-L6-v2 sees most
Chinese characters as [UNK]) and the BM25 query coverage (`knowledge.lexical`). They never
increase down the list, so "the best passage is below `min_score`" means "no grounding".
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from operator import attrgetter
from typing import Any

from knowledge.audience import Reader
from knowledge.config import KnowledgeSettings
from knowledge.embedding import Embedder, EmbeddingModelError
from knowledge.families import language_of
from knowledge.fusion import combine, dense_trust, rank_fusion
from knowledge.lexical import tokenize
from knowledge.live import LiveIndex, Snapshot
from knowledge.rerank import Reranker
from knowledge.types import Passage
from knowledge.vectors import VectorStore

log = logging.getLogger(__name__)
DUPLICATE_JACCARD = 0.85
BROAD_SHARE = 0.2  # a reader seeing at least this share of the chunks skips chromadb's filter
_SHINGLE = re.compile(r"\w+", re.UNICODE)


class Retriever:
    """Finds the passages closest to a question. `retrieve` is async and never blocks the loop."""

    def __init__(
        self,
        embedder: Embedder,
        store: VectorStore,
        settings: KnowledgeSettings,
        live: LiveIndex | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self._pair = (embedder, store)  # swapped together (`use`); a query reads it once
        self._live = live if live is not None else LiveIndex()
        self._settings = settings
        self._top_k = settings.top_k
        self._min_score = settings.min_score
        self._mode = settings.retrieval
        self._reranker = reranker
        self._chats = {key: tuple(value) for key, value in settings.chat_collections.items()}

    def use(self, embedder: Embedder, store: VectorStore) -> None:
        """Answer from another model's collection from the next query on (a completed
        re-embed); queries already running finish with the old pair."""
        self._pair = (embedder, store)

    @property
    def min_score(self) -> float:
        """A passage scoring below this is not grounding; callers compare the best score."""
        return self._min_score

    @property
    def top_k(self) -> int:
        """How many passages `retrieve` returns by default."""
        return self._top_k

    async def search(self, texts: Sequence[str], reader: Reader | None = None) -> list[Passage]:
        """Passages for one question asked in several texts (a follow-up made standalone, an
        error code read in a screenshot): from the collections the reader's chat is mapped to,
        that the reader may see (None: the default collection, every audience), each once at its
        best score, none below `min_score`; at most `top_k` when there was more than one text."""
        scope = self.collections_for(reader.platform, reader.chat_id) if reader else None
        best: dict[str, Passage] = {}
        for text in texts:
            for p in await self.retrieve(text, collections=scope, reader=reader):
                known = best.get(p.chunk_id)
                if p.score >= self._min_score and (known is None or p.score > known.score):
                    best[p.chunk_id] = p
        ranked = sorted(best.values(), key=attrgetter("score"), reverse=True)
        return ranked[: max(self._top_k, 1)] if len(texts) > 1 else ranked

    def collections_for(self, platform: str, chat_id: str) -> tuple[str, ...]:
        """The collections a chat may see: its `chat_collections` entry ("platform:chat_id",
        else "chat_id"), else the default collection."""
        return (
            self._chats.get(f"{platform}:{chat_id}")
            or self._chats.get(chat_id)
            or (self._settings.default_collection,)
        )

    async def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        collections: Sequence[str] | None = None,
        mode: str | None = None,
        per_document: int | None = None,
        reader: Reader | None = None,
    ) -> list[Passage]:
        """Up to `k` (default `top_k`) passages of `collections` (default: the default
        collection) that `reader` may see (None: every audience), best first; [] for an empty
        query. `per_document` (default the setting; 0 = no cap) chunks of one document before
        the other documents' first ones."""
        query = query.strip()
        k = self._top_k if k is None else k
        if not query or k < 1:
            return []
        allowed = tuple(collections) if collections else (self._settings.default_collection,)
        async with self._live.reading() as snapshot:
            if not snapshot.chunks:
                return []
            passages = await self._candidates(
                query, k, allowed, mode or self._mode, snapshot, reader
            )
        # a reranker reorders what it is given and the per-document cap reaches down the list,
        # so both need every candidate
        passages = _collapse(passages, len(passages))
        if self._reranker is not None and len(passages) > 1:
            passages = await self._reranker.rerank(query, passages)
        cap = self._settings.per_document if per_document is None else per_document
        passages = _monotone(_spread(passages, cap)[:k])
        floor = self._settings.min_score_zh
        if floor is not None and floor != self._min_score and language_of(query) == "zh":
            passages = [
                replace(p, score=_rescale(p.score, floor, self._min_score)) for p in passages
            ]
        return passages

    async def _candidates(
        self,
        query: str,
        k: int,
        allowed: tuple[str, ...],
        mode: str,
        snapshot: Snapshot,
        reader: Reader | None,
    ) -> list[Passage]:
        """Dense and lexical candidates of the allowed collections that the reader may see,
        fused into one ranking (within one snapshot of the live index)."""
        embedder, store = self._pair
        wanted = max(self._settings.candidates, k)
        admitted = self._live.admitted(snapshot, reader)  # None: nothing withheld
        (dense, readable), lexical = await asyncio.gather(
            self._dense(
                embedder, store, query, wanted, allowed, snapshot, admitted, strict=mode == "dense"
            )
            if mode != "lexical"
            else _nothing(),
            self._lexical(query, wanted, allowed, admitted) if mode != "dense" else _none(),
        )
        dense = [
            p
            for p in dense
            if snapshot.chunks.get(p.chunk_id) in allowed and snapshot.visible(p.chunk_id, admitted)
        ]
        lexical = [
            p
            for p in lexical
            if snapshot.chunks.get(p[0]) in allowed and snapshot.visible(p[0], admitted)
        ]
        return await self._fuse(store, dense, lexical, readable)

    async def _dense(
        self,
        embedder: Embedder,
        store: VectorStore,
        query: str,
        wanted: int,
        allowed: Sequence[str],
        snapshot: Snapshot,
        admitted: frozenset[str] | None,
        *,
        strict: bool,
    ) -> tuple[list[Passage], float]:
        try:
            vector, readable = await embedder.embed_query(query)
        except EmbeddingModelError as error:
            if strict:
                raise
            # The embeddings server is down (or the model will not load): answer from BM25
            # rather than not at all.
            log.warning("dense retrieval skipped, answering from BM25 alone: %s", error)
            return [], 0.0
        # Filter in chromadb only when the chat sees part of the store: unfiltered HNSW is faster.
        scope = None if snapshot.collections <= set(allowed) else list(allowed)
        found = await _visible_nearest(store, vector, wanted + 8, scope, snapshot, admitted)
        if readable == 1.0:  # the common case: every wordpiece known, scores stand as they are
            return found, readable
        return [replace(p, score=p.score * readable) for p in found], readable

    async def _lexical(
        self, query: str, wanted: int, allowed: Sequence[str], admitted: frozenset[str] | None
    ) -> list[tuple[str, float, float]]:
        def search() -> list[tuple[str, float, float]]:
            return self._live.lexical(tokenize(query), wanted, allowed, admitted)

        return await asyncio.to_thread(search)

    async def _fuse(
        self,
        store: VectorStore,
        dense: list[Passage],
        lexical: list[tuple[str, float, float]],
        readable: float,
    ) -> list[Passage]:
        """One ranking of both lists (`knowledge.fusion`); scores become calibrated relevance."""
        settings = self._settings
        trust = dense_trust(readable)
        # dense scores are cosine × readable share (see `_dense`): the cosine again
        cosines = [(p.chunk_id, p.score / readable if readable > 0 else 0.0) for p in dense]
        if not lexical:
            order = [chunk_id for chunk_id, _ in cosines]
        elif not dense:
            order = [chunk_id for chunk_id, _, _ in lexical]
        elif settings.fusion == "rank":
            order = rank_fusion(cosines, lexical, trust, settings.dense_weight, settings.fusion_k)
        else:
            order = combine(cosines, lexical, trust, settings.lexical_weight)
        relevance = {p.chunk_id: p.score for p in dense}
        for chunk_id, _, coverage in lexical:
            relevance[chunk_id] = max(relevance.get(chunk_id, 0.0), coverage)
        by_id = {p.chunk_id: p for p in dense}
        missing = [i for i in order if i not in by_id]
        by_id.update(await store.get(missing))
        return [replace(by_id[i], score=relevance[i]) for i in order if i in by_id]


async def _visible_nearest(
    store: VectorStore,
    vector: Sequence[float],
    n: int,
    scope: list[str] | None,
    snapshot: Snapshot,
    admitted: frozenset[str] | None,
) -> list[Passage]:
    """The `n` nearest chunks the reader may see. chromadb's metadata filter costs about a
    second at 100,000 chunks when it admits many of them, so an audience that sees at least
    BROAD_SHARE of the scope is served by an unfiltered search for more candidates, checked
    here; the filter is used when that falls short or the audience is narrow."""
    if admitted is None:
        return await store.query(vector, n, collections=scope)
    share = snapshot.share(scope, admitted)
    if share >= BROAD_SHARE:
        found = await store.query(vector, min(int(n / share * 2), 400), collections=scope)
        found = [p for p in found if snapshot.visible(p.chunk_id, admitted)]
        if len(found) >= n:
            return found[:n]
    return await store.query(vector, n, collections=scope, admitted=sorted(admitted))


def _rescale(score: float, floor: float, target: float) -> float:
    """Map [0, floor] onto [0, target] and [floor, 1] onto [target, 1]: a Chinese question's
    scores, so that its own floor (`min_score_zh`) lands on `min_score`."""
    if score <= floor:
        return score * target / floor if floor > 0 else target
    return target + (score - floor) * (1 - target) / (1 - floor) if floor < 1 else 1.0


def _spread(passages: list[Passage], cap: int) -> list[Passage]:
    """Each document's first `cap` passages keep their order; its others go after every other
    document's (overlapping chunks of one document must not crowd the rest out)."""
    if cap < 1:
        return passages
    seen: dict[tuple[str, str], int] = {}
    head: list[Passage] = []
    tail: list[Passage] = []
    for passage in passages:
        key = (passage.source, passage.location)
        seen[key] = seen.get(key, 0) + 1
        (head if seen[key] <= cap else tail).append(passage)
    return head + tail


async def _none() -> list[Any]:
    return []


async def _nothing() -> tuple[list[Passage], float]:
    return [], 1.0


@dataclass(frozen=True, slots=True)
class _Words:
    """A chunk's words, and the prefix of them (in one fixed order) that any chunk at least
    DUPLICATE_JACCARD alike must share: prefix filtering, so most pairs are told apart by a
    dozen lookups instead of a set intersection."""

    words: frozenset[str]
    prefix: frozenset[str]


@functools.lru_cache(maxsize=8192)
def _shingles(text: str) -> _Words:
    """The words of a chunk (cached: the same chunks come back for question after question)."""
    words = frozenset(_SHINGLE.findall(text.lower()))
    # If |A ∩ B| / |A ∪ B| >= t, the first |A| - ceil(t·|A|) + 1 words of A and of B, in any one
    # order both use, overlap (Chaudhuri et al., "A primitive operator for similarity joins")
    keep = len(words) - math.ceil(DUPLICATE_JACCARD * len(words)) + 1
    ordered = sorted(words, key=lambda w: (hash(w), w))
    return _Words(words, frozenset(ordered[:keep]))


def _alike(a: _Words, b: _Words) -> bool:
    """Jaccard similarity of the two word sets at least DUPLICATE_JACCARD (or both equal)."""
    if a.words == b.words:
        return True
    na, nb = len(a.words), len(b.words)
    if min(na, nb) < DUPLICATE_JACCARD * max(na, nb):
        return False
    shared = len(a.words & b.words)
    return shared / (na + nb - shared) >= DUPLICATE_JACCARD


def _collapse(passages: list[Passage], limit: int) -> list[Passage]:
    """The first `limit` passages not nearly identical to a better-ranked one (same page in two
    sources, …). Only kept passages sharing a prefix word (`_Words`) can be alike: an index of
    those words finds them, so a passage is compared with a few, not with every kept one."""
    kept: list[tuple[Passage, _Words]] = []
    by_prefix: dict[str, list[int]] = {}
    empty_kept = False  # texts without words are all alike
    for passage in passages:
        if len(kept) >= limit:
            break
        words = _shingles(passage.text)
        if not words.words:
            if empty_kept:
                continue
            empty_kept = True
        near = {i for word in words.prefix for i in by_prefix.get(word, ())}
        if any(_alike(words, kept[i][1]) for i in near):
            continue
        for word in words.prefix:
            by_prefix.setdefault(word, []).append(len(kept))
        kept.append((passage, words))
    return [p for p, _ in kept]


def _monotone(passages: list[Passage]) -> list[Passage]:
    """Scores never rise down the list: a lower-ranked passage cannot claim more relevance."""
    out: list[Passage] = []
    ceiling = 1.0
    for passage in passages:
        ceiling = min(ceiling, passage.score)
        out.append(passage if passage.score == ceiling else replace(passage, score=ceiling))
    return out
