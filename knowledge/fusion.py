"""Fusing the dense and the lexical ranking into one, per question, from the question's evidence.

Two kinds of askers meet the same index. One paraphrases from memory ("Is there money for
furnishing my remote workspace?"): few of the question's words are in the passage, BM25 is weak
and the embeddings carry the answer. The other has the document in front of them and reuses its
words ("Which starfish feeds on coral …"): BM25 is strong and a small embedding model often
prefers a neighbouring paragraph on the same subject. A fusion tuned to one style loses on the
other, so the weights come from each question, not from its language.

`combine` (the default, `fusion = "score"`) adds two calibrated relevances per chunk:

    trust × (cosine - background) / (1 - background)  +  lexical_weight × coverage²

- cosine over background: how far the chunk stands above this question's similarity to chunks
  that have nothing to do with it (the last dense candidate's cosine), as a share of the room
  left above. Raw cosines are not comparable across models (all-MiniLM-L6-v2 puts unrelated
  text near 0.2, multilingual-e5 near 0.75); measured against the question's own background
  the same weights hold for both (docs/retrieval.md). `trust` is how far the embedding model can
  be trusted with this question (`dense_trust`: zero when it cannot read the question's
  language, the readable share squared otherwise).
- coverage: the share of the question's idf mass the chunk matches (`knowledge.lexical`), so it
  says at once how many of the question's words the chunk holds and how rare they are. Squared,
  a paraphrase that shares a common word or two with a passage (coverage ~0.3 → 0.09) barely
  moves the dense order, while a question whose rare words are all in one chunk (coverage ~1)
  outweighs a small difference in cosine.

A chunk only one side proposes scores nothing on the other. A question the embedding model
cannot read keeps BM25's order, the dense list only filling the places BM25 leaves empty.

`rank_fusion` (`fusion = "rank"`) is the previous weighted reciprocal rank fusion, kept for
comparison (docs/retrieval.md has both measured on every evaluation set): ranks throw away how
sure each side is, so it cannot tell a pasted question from a paraphrase.
"""

from __future__ import annotations

from collections.abc import Sequence

READABLE_GATE = 0.5

Dense = Sequence[tuple[str, float]]  # (chunk id, cosine similarity), best first
Lexical = Sequence[tuple[str, float, float]]  # (chunk id, BM25 score, coverage), best first


def dense_trust(readable: float) -> float:
    """How much the dense side counts for a question the model reads `readable` of (0 when the
    question's language is not the model's; see `Embedder.readable`): nothing below
    READABLE_GATE, readable² above (a half-read question ranks chunks mostly by noise)."""
    return 0.0 if readable < READABLE_GATE else readable * readable


def combine(dense: Dense, lexical: Lexical, trust: float, lexical_weight: float) -> list[str]:
    """Chunk ids by calibrated cosine + lexical_weight × coverage², best first (see the module
    docstring)."""
    if trust <= 0:  # the embeddings cannot read the question: BM25's order, then theirs
        return list(dict.fromkeys([i for i, _, _ in lexical] + [i for i, _ in dense]))
    fused: dict[str, float] = {}
    order: dict[str, int] = {}
    for chunk_id, _, coverage in lexical:
        fused[chunk_id] = lexical_weight * coverage * coverage
        order.setdefault(chunk_id, len(order))
    background = min((cosine for _, cosine in dense), default=0.0)
    room = max(1.0 - background, 1e-6)
    for rank, (chunk_id, cosine) in enumerate(dense):
        above = trust * max(cosine - background, 0.0) / room
        fused[chunk_id] = fused.get(chunk_id, 0.0) + above
        order[chunk_id] = min(order.get(chunk_id, len(lexical) + rank), len(lexical) + rank)
    return sorted(fused, key=lambda i: (-fused[i], order[i]))


def rank_fusion(
    dense: Dense, lexical: Lexical, trust: float, dense_weight: float, k: int
) -> list[str]:
    """Weighted reciprocal rank fusion: dense ranks weigh dense_weight × trust, BM25's its best
    hit's coverage² (the fusion before `combine`)."""
    fused: dict[str, float] = {}
    weight = trust * dense_weight
    lexical_weight = lexical[0][2] ** 2 if lexical and dense and weight > 0 else 1.0
    if weight > 0:
        for rank, (chunk_id, _) in enumerate(dense):
            fused[chunk_id] = fused.get(chunk_id, 0.0) + weight / (k + rank + 1)
    for rank, (chunk_id, _, _) in enumerate(lexical):
        fused[chunk_id] = fused.get(chunk_id, 0.0) + lexical_weight / (k + rank + 1)
    tail = [chunk_id for chunk_id, _ in dense if chunk_id not in fused]
    return sorted(fused, key=lambda i: -fused[i]) + list(dict.fromkeys(tail))
