from __future__ import annotations

from pathlib import Path

import pytest

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.fusion import READABLE_GATE, combine, dense_trust, rank_fusion
from tests.perf.eval_reading import paragraphs

WEIGHT = KnowledgeSettings().lexical_weight


def test_a_question_pasted_from_a_passage_outweighs_a_closer_cosine() -> None:
    # every rare word of the question is in "pasted" (coverage 1); the embeddings prefer a
    # neighbouring paragraph by a little
    dense = [("neighbour", 0.72), ("pasted", 0.64), ("other", 0.40)]
    lexical = [("pasted", 9.1, 1.0), ("neighbour", 2.0, 0.25)]

    assert combine(dense, lexical, 1.0, WEIGHT)[0] == "pasted"


def test_a_paraphrase_keeps_the_dense_order() -> None:
    # the paraphrase shares one common word with a wrong passage (coverage 0.35)
    dense = [("answer", 0.61), ("close", 0.52), ("wrong", 0.30)]
    lexical = [("wrong", 3.2, 0.35), ("answer", 1.1, 0.12)]

    assert combine(dense, lexical, 1.0, WEIGHT)[:2] == ["answer", "close"]


def test_an_unread_question_ranks_by_bm25_then_fills_with_the_dense_order() -> None:
    dense = [("d1", 0.5), ("l2", 0.4), ("d2", 0.3)]
    lexical = [("l1", 5.0, 0.8), ("l2", 2.0, 0.4)]

    assert combine(dense, lexical, dense_trust(0.3), WEIGHT) == ["l1", "l2", "d1", "d2"]
    assert rank_fusion(dense, lexical, dense_trust(0.3), 2.0, 5) == ["l1", "l2", "d1", "d2"]


def test_dense_trust_gates_half_read_questions() -> None:
    assert dense_trust(0.0) == 0.0
    assert dense_trust(READABLE_GATE - 0.01) == 0.0
    assert dense_trust(0.8) == 0.8 * 0.8
    assert dense_trust(1.0) == 1.0


def test_rank_fusion_cannot_tell_a_pasted_question_from_a_paraphrase() -> None:
    """Why the score fusion is the default: with the same ranks, the rank fusion gives the same
    answer whatever the coverage and cosines say."""
    dense = [("neighbour", 0.72), ("pasted", 0.64)]
    lexical = [("pasted", 9.1, 1.0), ("neighbour", 2.0, 0.25)]

    assert rank_fusion(dense, lexical, 1.0, 2.0, 5)[0] == "neighbour"
    assert combine(dense, lexical, 1.0, WEIGHT)[0] == "pasted"


ARTICLES = ("saturn", "glacier", "tides")
HANDBOOK = {
    "payroll.md": "# Payroll\n\nSalaries are paid on the 25th of each month by bank transfer. "
    "When the 25th falls on a weekend or a public holiday, payment is made on the working day "
    "before. Payslips are in the HR portal two days earlier.\n",
    "leave.md": "# Annual leave\n\nEvery employee has 25 days of annual leave a year. Request "
    "leave in the HR portal at least two weeks before the first day off; unused days carry over "
    "until the end of March.\n",
}


@pytest.fixture(scope="module")
def articles_kb(embedder: Embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three articles of the reading-comprehension set (twelve paragraphs) and two handbook
    pages, indexed with the real bundled model."""
    root = tmp_path_factory.mktemp("articles")
    corpus = root / "corpus"
    corpus.mkdir()
    for p in paragraphs():
        if p.file.split("-")[0] in ARTICLES:
            (corpus / p.file).write_text(f"# {p.title}\n\n{p.body}\n", "utf-8")
    for name, text in HANDBOOK.items():
        (corpus / name).write_text(text, "utf-8")
    return root


async def _open(root: Path, embedder: Embedder) -> KnowledgeBase:
    settings = KnowledgeSettings(
        persist_dir=root / "chroma",
        collection="articles",
        seed_sample=False,
        sources=[SourceSettings(name="corpus", kind="directory", location=str(root / "corpus"))],
    )
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    report = await kb.refresh("corpus")
    assert report.result == "ok", report.summary()
    return kb


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What is Saturn made mostly of?", "saturn-1.md"),
        ("Where does a glacier form?", "glacier-1.md"),
        ("When do spring tides occur?", "tides-2.md"),
    ],
)
async def test_a_question_pasted_from_the_document_ranks_it_first_when_dense_disagrees(
    articles_kb: Path, embedder: Embedder, question: str, expected: str
) -> None:
    kb = await _open(articles_kb, embedder)
    try:
        dense = await kb.retriever.retrieve(question, k=1, mode="dense")
        hybrid = await kb.retriever.retrieve(question, k=1)
    finally:
        await kb.close()
    assert not dense[0].location.endswith(expected)  # the embeddings prefer a neighbour
    assert hybrid[0].location.endswith(expected)


async def test_a_paraphrase_still_wins_through_dense(articles_kb: Path, embedder: Embedder) -> None:
    question = "On which day does my pay arrive?"  # no word of the payroll page but "day"
    kb = await _open(articles_kb, embedder)
    try:
        lexical = await kb.retriever.retrieve(question, k=1, mode="lexical")
        hybrid = await kb.retriever.retrieve(question, k=1)
    finally:
        await kb.close()
    assert not lexical[0].location.endswith("payroll.md")  # BM25 alone misses it
    assert hybrid[0].location.endswith("payroll.md")
