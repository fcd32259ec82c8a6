from __future__ import annotations

import random

import pytest

from knowledge import KnowledgeBase
from knowledge.retriever import DUPLICATE_JACCARD, _collapse
from knowledge.types import Passage


@pytest.mark.parametrize(
    ("question", "location"),
    [
        ("How do I reset my VPN?", "sample/vpn.md"),
        ("VPN error GC-412", "sample/vpn.md"),
        ("How many days of annual leave do I get?", "sample/leave-policy.md"),
        ("I forgot my password and lost my phone", "sample/password-reset.md"),
        ("How do I print a document?", "sample/laptop-and-printing.md"),
        ("How do I submit an expense claim on expense.example.com?", "sample/报销流程.md"),
        ("新员工入职第一天要做什么", "sample/入职指南.md"),
    ],
)
async def test_question_finds_its_document(
    sample_kb: KnowledgeBase, question: str, location: str
) -> None:
    passages = await sample_kb.retriever.retrieve(question)

    assert passages[0].location == location
    assert passages[0].score >= sample_kb.retriever.min_score


async def test_vpn_reset_section_is_retrieved(sample_kb: KnowledgeBase) -> None:
    passages = await sample_kb.retriever.retrieve("How do I reset my VPN?", k=3, per_document=0)

    assert {p.location for p in passages} == {"sample/vpn.md"}
    assert "Connecting to the VPN > Resetting the VPN" in {p.section for p in passages}
    reset = next(p for p in passages if p.section.endswith("Resetting the VPN"))
    assert "GlobalConnect" in reset.text
    assert reset.title == "Connecting to the VPN"
    assert reset.source == "sample"
    assert reset.chunk_id.startswith("sample:")
    wider = await sample_kb.retriever.retrieve("How do I reset my VPN?", k=5, per_document=0)
    assert any("Reset VPN profile" in p.text for p in wider)


async def test_distinct_documents_fill_the_passages(sample_kb: KnowledgeBase) -> None:
    """Uncapped, the VPN page's chunks take every place; capped at two a document, the next
    places go to other documents, and the VPN page's other chunks follow them."""
    question = "How do I reset my VPN?"
    uncapped = await sample_kb.retriever.retrieve(question, k=4, per_document=0)
    assert [p.location for p in uncapped] == ["sample/vpn.md"] * 4
    capped = await sample_kb.retriever.retrieve(question, k=4)  # per_document = 2 (default)
    assert [p.location for p in capped[:2]] == ["sample/vpn.md"] * 2
    assert "sample/vpn.md" not in {p.location for p in capped[2:]}
    assert capped[:2] == uncapped[:2]
    everything = await sample_kb.retriever.retrieve(question, k=100)
    assert len(everything) == await sample_kb.store.count()  # the cap reorders, never drops
    one = await sample_kb.retriever.retrieve(question, k=4, per_document=1)
    assert len({p.location for p in one}) == 4


async def test_chinese_question_finds_reimbursement(sample_kb: KnowledgeBase) -> None:
    # all-MiniLM-L6-v2 reads most CJK characters as [UNK]; BM25 over jieba words finds it.
    passages = await sample_kb.retriever.retrieve("报销需要多少天内提交")
    assert passages[0].location == "sample/报销流程.md"
    assert passages[0].score >= sample_kb.retriever.min_score
    lexical = await sample_kb.retriever.retrieve("报销需要多少天内提交", mode="lexical")
    assert lexical[0].location == "sample/报销流程.md"


async def test_chinese_question_with_shared_terms_finds_reimbursement(
    sample_kb: KnowledgeBase,
) -> None:
    # What the bundled model can do for Chinese: match on the ASCII and known characters.
    passages = await sample_kb.retriever.retrieve("报销 expense.example.com")
    assert passages[0].location == "sample/报销流程.md"


async def test_results_are_sorted_scored_and_sized(sample_kb: KnowledgeBase) -> None:
    retriever = sample_kb.retriever
    passages = await retriever.retrieve("VPN certificate expired")

    assert len(passages) == retriever.top_k == 4
    scores = [p.score for p in passages]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert len(await retriever.retrieve("VPN", k=1)) == 1
    assert len(await retriever.retrieve("VPN", k=100)) == await sample_kb.store.count()


@pytest.mark.parametrize(
    "question",
    [
        "What is a good recipe for lasagna?",
        "今天天气怎么样",
        "谁赢了昨天的足球比赛",
        "Who won the 1998 World Cup?",
    ],
)
async def test_off_topic_question_is_not_grounded(sample_kb: KnowledgeBase, question: str) -> None:
    passages = await sample_kb.retriever.retrieve(question)
    assert all(p.score < sample_kb.retriever.min_score == 0.30 for p in passages)


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
async def test_empty_query_returns_nothing(sample_kb: KnowledgeBase, query: str) -> None:
    assert await sample_kb.retriever.retrieve(query) == []


async def test_zero_k_returns_nothing(sample_kb: KnowledgeBase) -> None:
    assert await sample_kb.retriever.retrieve("VPN", k=0) == []


async def test_empty_collection_returns_nothing(kb: KnowledgeBase) -> None:
    assert await kb.retriever.retrieve("How do I reset my VPN?") == []


async def test_an_english_only_model_does_not_rank_chinese_questions(
    sample_kb: KnowledgeBase,
) -> None:
    """The bundled model declares English: for a Chinese question the fused ranking is BM25's,
    not BM25's pushed around by near-random similarities; the dense list only fills the places
    BM25 leaves empty."""
    from tests.perf.knowledge_eval import CHINESE

    embedder = sample_kb.embedder
    for question, _ in CHINESE[:12]:
        assert await embedder.run(embedder.readable, question) == 0.0
        hybrid = await sample_kb.retriever.retrieve(question, k=5, per_document=0)
        lexical = await sample_kb.retriever.retrieve(question, k=5, per_document=0, mode="lexical")
        ids = [p.chunk_id for p in lexical]
        assert [p.chunk_id for p in hybrid][: len(ids)] == ids, question


async def test_english_questions_still_use_both_sides(sample_kb: KnowledgeBase) -> None:
    embedder = sample_kb.embedder
    question = "What happens when my password is too old?"
    assert await embedder.run(embedder.readable, question) == 1.0
    hybrid = await sample_kb.retriever.retrieve(question, k=5, per_document=0)
    dense = await sample_kb.retriever.retrieve(question, k=5, per_document=0, mode="dense")
    lexical = await sample_kb.retriever.retrieve(question, k=5, per_document=0, mode="lexical")
    ids = [p.chunk_id for p in hybrid]
    assert ids != [p.chunk_id for p in lexical] or ids == [p.chunk_id for p in dense]
    assert set(ids) & {p.chunk_id for p in dense}


def test_chinese_scores_are_rescaled_onto_the_common_floor() -> None:
    from knowledge.retriever import _rescale

    assert _rescale(0.25, 0.25, 0.30) == pytest.approx(0.30)
    assert _rescale(0.0, 0.25, 0.30) == 0.0 and _rescale(1.0, 0.25, 0.30) == pytest.approx(1.0)
    assert _rescale(0.20, 0.25, 0.30) < 0.30 < _rescale(0.26, 0.25, 0.30)
    scores = [_rescale(x / 20, 0.25, 0.30) for x in range(21)]
    assert scores == sorted(scores)  # never reorders


async def test_a_chinese_question_meets_its_own_floor(sample_kb: KnowledgeBase) -> None:
    from knowledge.retriever import Retriever

    question = "报销需要多少天内提交"
    common = Retriever(
        sample_kb.embedder,
        sample_kb.store,
        sample_kb.settings.model_copy(update={"min_score_zh": None}),
        sample_kb.live,
    )
    raw = (await common.retrieve(question, k=1))[0].score
    calibrated = (await sample_kb.retriever.retrieve(question, k=1))[0].score
    assert sample_kb.settings.min_score_zh == 0.25
    assert calibrated == pytest.approx(0.30 + (raw - 0.25) * 0.70 / 0.75)
    english = "How do I reset my VPN?"
    assert (await common.retrieve(english, k=1))[0].score == (
        await sample_kb.retriever.retrieve(english, k=1)
    )[0].score


async def test_several_texts_of_one_question_merge_by_best_score(sample_kb: KnowledgeBase) -> None:
    """Retriever.search: a follow-up and its standalone form (or an error code read in a
    screenshot) are one question: each passage once, at its best score, none under the floor,
    at most top_k; one text is retrieve's own ranking, floored."""
    retriever = sample_kb.retriever
    texts = ["How do I reset my VPN?", "How many days of annual leave do I get?"]
    merged = await retriever.search(texts)
    alone = [await retriever.retrieve(t) for t in texts]
    assert len(merged) <= retriever.top_k
    assert len({p.chunk_id for p in merged}) == len(merged)
    assert all(p.score >= retriever.min_score for p in merged)
    assert [p.score for p in merged] == sorted((p.score for p in merged), reverse=True)
    best = {p.chunk_id: p.score for found in alone for p in found}
    for found in alone:
        for p in found:
            best[p.chunk_id] = max(best[p.chunk_id], p.score)
    assert all(p.score == best[p.chunk_id] for p in merged)
    assert {p.location for p in merged} >= {"sample/vpn.md"}
    one = await retriever.search(texts[:1])
    assert one == [p for p in alone[0] if p.score >= retriever.min_score]


def _passage(text: str, n: int) -> Passage:
    return Passage(text, f"doc {n}", "handbook", f"doc{n}.md", "", 1.0 - n / 1000, f"c{n}")


def test_near_duplicates_collapse_exactly_as_their_jaccard_says() -> None:
    """The same page in two sources is shown once; a chunk that merely shares words is kept.
    Checked against the plain Jaccard over many random pairs (the prefix filter may only
    skip work, never change a verdict)."""
    rng = random.Random(7)
    vocabulary = [f"w{i}" for i in range(400)] + ["VPN", "密码", "报销"]
    for _ in range(400):
        base = rng.sample(vocabulary, rng.randint(1, 120))
        other = base[: rng.randint(0, len(base))] + rng.sample(vocabulary, rng.randint(0, 30))
        a, b = frozenset(w.lower() for w in base), frozenset(w.lower() for w in other)
        jaccard = len(a & b) / len(a | b) if a | b else 1.0
        kept = _collapse([_passage(" ".join(base), 0), _passage(" ".join(other), 1)], 2)
        assert len(kept) == (1 if jaccard >= DUPLICATE_JACCARD else 2), (len(a), len(b), jaccard)
    page = "Reset your VPN password in the self-service portal, then reconnect. " * 3
    copies = [_passage(page, 0), _passage(page + " Updated.", 1), _passage("Leave policy.", 2)]
    assert [p.chunk_id for p in _collapse(copies, 3)] == ["c0", "c2"]


def test_collapse_keeps_what_comparing_every_pair_keeps() -> None:
    """Many passages at once (some copies, some edited copies, some empty): the same passages
    survive as when each is compared with every better-ranked one kept before it."""
    rng = random.Random(11)
    vocabulary = [f"w{i}" for i in range(300)]

    def plain(passages: list[Passage], limit: int) -> list[str]:
        kept: list[tuple[str, frozenset[str]]] = []
        for p in passages:
            words = frozenset(p.text.lower().split())
            if len(kept) < limit and not any(
                words == w or (words and w and len(words & w) / len(words | w) >= DUPLICATE_JACCARD)
                for _, w in kept
            ):
                kept.append((p.chunk_id, words))
        return [chunk_id for chunk_id, _ in kept]

    for _ in range(60):
        texts: list[str] = []
        for _ in range(30):
            roll = rng.random()
            if texts and roll < 0.3:  # an edited copy of an earlier passage
                words = rng.choice(texts).split()
                cut = rng.randint(0, max(len(words) // 8, 1))
                texts.append(" ".join(words[cut:] + rng.sample(vocabulary, rng.randint(0, 3))))
            elif roll < 0.35:
                texts.append("")
            else:
                texts.append(" ".join(rng.sample(vocabulary, rng.randint(1, 80))))
        passages = [_passage(t, n) for n, t in enumerate(texts)]
        for limit in (5, 30):
            assert [p.chunk_id for p in _collapse(passages, limit)] == plain(passages, limit)
