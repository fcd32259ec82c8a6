"""Plain BM25 over the same chunks, the baseline the lexical side must match: bm25s with
lower-cased words and no stemming (optionally its English stopwords and PyStemmer), scored like
`knowledge.eval`: the rank of the expected document among the first five passages, at most
`per_document` (2) of one document among them, MRR@5."""

from __future__ import annotations

from collections.abc import Sequence

from knowledge import KnowledgeBase
from knowledge.config import KnowledgeSettings
from knowledge.eval import DEPTH, EvalCase
from knowledge.types import Passage

PER_DOCUMENT = KnowledgeSettings().per_document


async def chunks(kb: KnowledgeBase) -> list[Passage]:
    """Every indexed chunk of the knowledge base."""
    ids = [i for entry in await kb.catalog.chunk_map() for i in entry.chunk_ids]
    found = await kb.store.get(ids)
    return [found[i] for i in ids if i in found]


def bm25_mrr(
    passages: Sequence[Passage], cases: Sequence[EvalCase], *, stopwords: bool, stem: bool
) -> float:
    """MRR@5 of bm25s over the chunks (title and text, as teambot indexes them)."""
    import bm25s

    stemmer = None
    if stem:
        import Stemmer

        stemmer = Stemmer.Stemmer("english")
    words = "en" if stopwords else None
    corpus = bm25s.tokenize(
        [f"{p.title}\n{p.text}" for p in passages],
        lower=True,
        stopwords=words,
        stemmer=stemmer,
        show_progress=False,
    )
    index = bm25s.BM25()
    index.index(corpus, show_progress=False)
    queries = bm25s.tokenize(
        [c.question for c in cases],
        lower=True,
        stopwords=words,
        stemmer=stemmer,
        show_progress=False,
    )
    found, _ = index.retrieve(queries, k=min(50, len(passages)), show_progress=False)
    total = 0.0
    for case, row in zip(cases, found, strict=True):
        locations = spread([passages[int(i)].location for i in row], PER_DOCUMENT)[:DEPTH]
        rank = next(
            (
                n
                for n, location in enumerate(locations, start=1)
                if any(location == e or location.endswith("/" + e) for e in case.expected)
            ),
            None,
        )
        total += 1 / rank if rank else 0.0
    return total / len(cases)


def spread(locations: Sequence[str], cap: int) -> list[str]:
    """As teambot's retriever orders its passages: each document's first `cap` chunks keep
    their places, its others go after every other document's (so both are ranked alike: the
    first five passages, a document at most twice among them)."""
    seen: dict[str, int] = {}
    head, tail = [], []
    for location in locations:
        seen[location] = seen.get(location, 0) + 1
        (head if seen[location] <= cap else tail).append(location)
    return head + tail
