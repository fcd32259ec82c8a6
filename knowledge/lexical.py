"""Lexical retrieval: BM25 over words (English) and jieba words (Chinese), updated in place.

English words are Snowball-stemmed (PyStemmer) inside the index, at indexing and at query time
alike (`terms`): "resetting", "resets" and "reset" are one term. The catalog keeps `tokenize`'s
unstemmed words, so a change of stemmer never needs the stored tokens of existing indexes
rewritten: the index stems them again when it loads them at start. Measured against plain BM25
(bm25s, lower-cased words, no stemming) on both English evaluation sets: docs/retrieval.md.

Chinese text also goes into a second field of character bigrams (`grams`), derived from the same
tokens. jieba does not always cut a question and a passage alike (`王连字` in one, `王连` + `字`
in the other): the word field then finds nothing, the bigram field still matches. A chunk's score
is its word BM25 plus GRAM_WEIGHT times its bigram BM25 (set from tests/perf/test_knowledge_bench.py).

`bm25s` builds a static index (a full rebuild of 100,000 chunks takes about ten seconds on our
2-core machines), which would make every refresh pay for the whole corpus. This index keeps
postings per term and applies a refresh's added and removed chunks in place; its scores are
bm25s's "lucene" BM25 (same k1, b and idf; tests/knowledge/test_lexical.py checks them against
bm25s), and it uses bm25s's stopword lists.

`relevance` turns a raw score into [0, 1]: the share of the query's idf mass the chunk matches
(a term present once in a chunk of average length counts fully), so it can be compared with a
floor the same way as a cosine similarity.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from knowledge.segmenter import Segmenter

K1 = 1.5
B = 0.75
GRAM_WEIGHT = 0.25  # bigram share of a Chinese score (measured: docs/retrieval.md)

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
_CJK_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+$")
_WORD = re.compile(r"[a-z0-9]+")
# "expense.example.com", "gc-412", "v2.3": kept whole as well as in parts (an exact match is rare
# and telling, its parts are common).
_COMPOUND = re.compile(r"[a-z0-9]+(?:[.\-_/@][a-z0-9]+)+")
_STEMMABLE = re.compile(r"^[a-z]{3,}$")
_LETTER = re.compile(r"^[a-z]$")
_TERM_CACHE = 500_000  # distinct tokens remembered (a large knowledge base has ~200,000)
_segmenter_lock = threading.Lock()
_segmenter_made: Segmenter | None = None
_stem_lock = threading.Lock()
_terms: dict[str, str] = {}


def _segmenter() -> Segmenter:
    """The process's one segmenter: jieba's dictionary from disk, then in memory."""
    global _segmenter_made
    with _segmenter_lock:
        if _segmenter_made is None:
            from knowledge.segmenter import Segmenter

            _segmenter_made = Segmenter()
        return _segmenter_made


@functools.cache  # read once, on first use (or at `warmup`)
def stopwords() -> frozenset[str]:
    """bm25s's English and Chinese stopword lists."""
    words = _bm25s_stopwords()
    return frozenset(words.STOPWORDS_EN) | frozenset(words.STOPWORDS_CHINESE)


def _bm25s_stopwords() -> Any:
    """bm25s/stopwords.py (plain tuples) run alone: importing it through its package would
    import bm25s itself and scipy.sparse with it, ~0.3 s of CPU for two word lists."""
    import importlib.util

    package = importlib.util.find_spec("bm25s")
    if package is None or package.origin is None:
        raise ModuleNotFoundError("bm25s is not installed: pip install bm25s")
    spec = importlib.util.spec_from_file_location(
        "_teambot_bm25s_stopwords", Path(package.origin).with_name("stopwords.py")
    )
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError("bm25s has no stopwords.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def warmup() -> None:
    """Load jieba's dictionary and the stopword lists now (blocking, about a second)."""
    _segmenter().load()
    stopwords()


def _stem(word: str) -> str:
    # The catalog's tokens fold plurals ("days" ~ "day"); kept as the stored form so that
    # indexes written before the stemmer need no re-tokenizing (`terms` stems on top of it).
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


@functools.cache  # built once, on first use; stemWord calls hold _stem_lock
def _stemmer() -> object:
    import Stemmer

    return Stemmer.Stemmer("english")


def term(token: str) -> str:
    """The index term of one stored token: an English word's Snowball stem ("resetting",
    "resets" ~ "reset"), anything else (Chinese words, numbers, "gc-412") as it is."""
    found = _terms.get(token)
    if found is None:
        if _STEMMABLE.match(token):
            stemmer = _stemmer()
            with _stem_lock:  # a PyStemmer object is not thread-safe
                found = stemmer.stemWord(token)  # type: ignore[attr-defined]
        else:
            found = token
        if len(_terms) < _TERM_CACHE:
            _terms[token] = found
    return found


def terms(tokens: Iterable[str]) -> list[str]:
    """`term` of each token: what the index holds and what a query looks up. A single letter
    is no term: the "t" of "don't" and the "s" of "company's" are rare in passages, so their
    idf is high and they pulled unrelated chunks up (measured: docs/retrieval.md)."""
    return [term(t) for t in tokens if not _LETTER.match(t)]


def tokenize(text: str) -> list[str]:
    """Lower-cased words and jieba search-mode words for Chinese runs, without stopwords."""
    lowered = text.lower()
    stop = stopwords()
    tokens: list[str] = []
    position = 0
    for match in _CJK_RUN.finditer(lowered):
        tokens.extend(_words(lowered[position : match.start()]))
        tokens.extend(_segmenter().cut_for_search(match.group()))
        position = match.end()
    tokens.extend(_words(lowered[position:]))
    return [t for t in tokens if t not in stop and t.strip()]


def _words(text: str) -> list[str]:
    words = [_stem(w) for w in _WORD.findall(text)]
    words.extend(_COMPOUND.findall(text))
    return words


def grams(tokens: Iterable[str]) -> list[str]:
    """Character bigrams of the Chinese tokens (a one-character word stays itself), each once.

    Built from tokens rather than text so that the catalog's stored tokens are enough; jieba's
    search mode repeats sub-words of long words, hence each bigram only once per chunk.
    """
    found: dict[str, None] = {}
    for token in tokens:
        if not _CJK_WORD.match(token):
            continue
        if len(token) == 1:
            found.setdefault(token)
        for i in range(len(token) - 1):
            found.setdefault(token[i : i + 2])
    return list(found)


class LexicalIndex:
    """BM25 over two fields, words and Chinese character bigrams, updated in place.

    Not thread-safe by itself: `LiveIndex` serializes access.
    """

    def __init__(self) -> None:
        self._words = _Field()
        self._grams = _Field()

    def __len__(self) -> int:
        return len(self._words)

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._words

    def add(self, chunk_id: str, group: str, tokens: Sequence[str]) -> None:
        """Index one chunk's stored tokens (`tokenize`) under a group (its collection); replaces
        an earlier one of that id."""
        self._words.add(chunk_id, group, terms(tokens))
        self._grams.add(chunk_id, group, grams(tokens))

    def remove(self, chunk_id: str) -> None:
        """Forget one chunk (no-op when unknown)."""
        self._words.remove(chunk_id)
        self._grams.remove(chunk_id)

    def idf(self, token: str) -> float:
        """The word field's idf of a token."""
        return self._words.idf(term(token))

    def search(
        self,
        tokens: Iterable[str],
        k: int,
        groups: Iterable[str] | None = None,
        *,
        gram_weight: float | None = None,
    ) -> list[tuple[str, float, float]]:
        """Top `k` as (chunk id, score, relevance in [0, 1]), best first.

        relevance is the larger of the word and the bigram field's query coverage."""
        tokens = list(dict.fromkeys(tokens))
        words = list(dict.fromkeys(terms(tokens)))
        weight = GRAM_WEIGHT if gram_weight is None else gram_weight
        query_grams = grams(tokens) if weight > 0 else []
        if not query_grams:
            return self._words.search(words, k, groups)
        groups = list(groups) if groups is not None else None
        wide = max(k * 3, 50)  # the two fields disagree on order: take more of each, then cut
        bigrams = self._grams.search(query_grams, wide, groups)
        merged: dict[str, list[float]] = {}
        for chunk_id, score, relevance in self._words.search(words, wide, groups):
            merged[chunk_id] = [score, relevance]
        for chunk_id, score, relevance in bigrams:
            entry = merged.setdefault(chunk_id, [0.0, 0.0])
            entry[0] += weight * score
            entry[1] = max(entry[1], relevance)
        order = sorted(merged.items(), key=lambda item: -item[1][0])[:k]
        return [(chunk_id, score, relevance) for chunk_id, (score, relevance) in order]


class _Field:
    """BM25 postings of one field that take additions and removals in place."""

    def __init__(self) -> None:
        self._ids: list[str] = []
        self._slot: dict[str, int] = {}
        self._terms: list[tuple[str, ...]] = []
        self._tfs: list[array[int]] = []
        self._length = np.zeros(1024, dtype=np.float32)
        self._alive = np.zeros(1024, dtype=bool)
        self._group = np.zeros(1024, dtype=np.int32)
        self._groups: dict[str, int] = {}
        self._postings: dict[str, tuple[list[int], list[int]]] = {}
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._df: Counter[str] = Counter()
        self._count = 0
        self._total = 0.0
        self._dead = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, chunk_id: object) -> bool:
        return chunk_id in self._slot

    def add(self, chunk_id: str, group: str, tokens: Sequence[str]) -> None:
        """Index one chunk under a group (its collection); replaces an earlier one of that id."""
        if chunk_id in self._slot:
            self.remove(chunk_id)
        slot = len(self._ids)
        if slot >= len(self._alive):
            size = len(self._alive) * 2
            self._length = np.resize(self._length, size)
            self._alive = np.resize(self._alive, size)
            self._group = np.resize(self._group, size)
        counts = Counter(tokens)
        self._ids.append(chunk_id)
        self._slot[chunk_id] = slot
        self._terms.append(tuple(sys.intern(t) for t in counts))
        self._tfs.append(array("H", (min(n, 65535) for n in counts.values())))
        self._length[slot] = len(tokens)
        self._alive[slot] = True
        self._group[slot] = self._groups.setdefault(group, len(self._groups))
        for term, tf in counts.items():
            slots, tfs = self._postings.setdefault(term, ([], []))
            slots.append(slot)
            tfs.append(tf)
            self._df[term] += 1
            self._arrays.pop(term, None)
        self._count += 1
        self._total += len(tokens)

    def remove(self, chunk_id: str) -> None:
        """Forget one chunk (no-op when unknown)."""
        slot = self._slot.pop(chunk_id, None)
        if slot is None:
            return
        self._alive[slot] = False
        for term in self._terms[slot]:
            self._df[term] -= 1
            if self._df[term] <= 0:
                del self._df[term]
        self._terms[slot] = ()
        self._tfs[slot] = array("H")
        self._count -= 1
        self._total -= float(self._length[slot])
        self._dead += 1
        if self._dead > 10_000 and self._dead > self._count:
            self._compact()

    def idf(self, term: str) -> float:
        df = self._df.get(term, 0)
        return math.log(1 + (self._count - df + 0.5) / (df + 0.5))

    def search(
        self, tokens: Iterable[str], k: int, groups: Iterable[str] | None = None
    ) -> list[tuple[str, float, float]]:
        """Top `k` as (chunk id, BM25 score, relevance in [0, 1]), best first."""
        terms = list(dict.fromkeys(tokens))
        if not terms or not self._count or k < 1:
            return []
        size = len(self._ids)
        scores = np.zeros(size, dtype=np.float32)
        average = self._total / self._count if self._count else 1.0
        norm = K1 * (1 - B + B * self._length[:size] / max(average, 1e-9))
        mass = 0.0
        for term in terms:
            idf = self.idf(term)
            mass += idf
            if term not in self._df:
                continue
            slots, tfs = self._term_arrays(term)
            scores[slots] += idf * tfs / (tfs + norm[slots])
        scores[~self._alive[:size]] = 0.0
        if groups is not None:
            codes = [self._groups[g] for g in groups if g in self._groups]
            scores[~np.isin(self._group[:size], codes)] = 0.0
        hits = np.flatnonzero(scores > 0)
        if not len(hits):
            return []
        if len(hits) > k:
            hits = hits[np.argpartition(-scores[hits], k - 1)[:k]]
        hits = hits[np.argsort(-scores[hits], kind="stable")]
        full = mass / (1 + K1)  # each term once, in a chunk of average length
        return [(self._ids[i], float(scores[i]), min(1.0, float(scores[i]) / full)) for i in hits]

    def _term_arrays(self, term: str) -> tuple[np.ndarray, np.ndarray]:
        cached = self._arrays.get(term)
        if cached is None:
            slots, tfs = self._postings[term]
            cached = (np.asarray(slots, dtype=np.int64), np.asarray(tfs, dtype=np.float32))
            self._arrays[term] = cached
        return cached

    def _compact(self) -> None:
        """Drop removed slots (postings only ever grow otherwise)."""
        names = {code: name for name, code in self._groups.items()}
        keep = [
            (chunk_id, names[int(self._group[slot])], self._terms[slot], self._tfs[slot])
            for chunk_id, slot in self._slot.items()
        ]
        self.__init__()  # type: ignore[misc]
        for chunk_id, group, terms, tfs in keep:
            self.add(
                chunk_id, group, [t for t, n in zip(terms, tfs, strict=True) for _ in range(n)]
            )
