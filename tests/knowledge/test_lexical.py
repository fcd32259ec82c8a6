from __future__ import annotations

from knowledge.lexical import LexicalIndex, grams, tokenize


def _index(texts: dict[str, str]) -> LexicalIndex:
    index = LexicalIndex()
    for chunk_id, text in texts.items():
        index.add(chunk_id, "default", tokenize(text))
    return index


def test_bigrams_of_chinese_tokens_only() -> None:
    assert grams(["王连字", "vpn", "字", "王连字"]) == ["王连", "连字", "字"]
    assert grams(["reset", "gc-412"]) == []


def test_a_segmentation_mismatch_still_finds_the_passage() -> None:
    # jieba keeps 王连字 whole in the question but splits the passage differently: the word
    # field has no term in common, the bigram field does.
    index = _index(
        {
            "bio": "王连 字 负责 报销 审核",
            "other": "差旅 住宿 标准 每晚 五百元",
        }
    )
    assert index.search(["王连字"], 5, gram_weight=0.0) == []
    hits = index.search(["王连字"], 5)
    assert [chunk_id for chunk_id, _, _ in hits] == ["bio"]
    assert 0.0 < hits[0][2] <= 1.0


def test_bigrams_do_not_change_english_scores() -> None:
    texts = {"a": "reset the VPN profile", "b": "annual leave days", "c": "VPN error GC-412"}
    index = _index(texts)
    question = tokenize("How do I reset my VPN?")
    assert index.search(question, 3) == index.search(question, 3, gram_weight=0.0)


def test_removed_chunks_leave_both_fields() -> None:
    index = _index({"a": "报销流程 说明", "b": "入职 指南"})
    index.remove("a")
    assert len(index) == 1 and "a" not in index
    assert index.search(tokenize("报销"), 5) == []
    assert [i for i, _, _ in index.search(tokenize("入职指南"), 5)] == ["b"]
