from __future__ import annotations

from knowledge.lexical import LexicalIndex, grams, terms, tokenize


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


def test_scores_are_bm25s_lucene_scores_also_after_changes_in_place() -> None:
    """The in-place index scores like bm25s's "lucene" BM25 (same k1, b and idf) over the same
    tokens, and still does after chunks are removed and replaced without a rebuild."""
    import bm25s
    import numpy as np

    from knowledge.lexical import K1, B

    texts = {
        "vpn": "Reset the VPN profile when GlobalConnect reports error GC-412 again",
        "leave": "Annual leave is 25 days; unused leave days carry over until March",
        "pass": "Reset your password at account.example.com; the VPN uses the same password",
        "trip": "Travel expenses: hotel up to 500 a night, the VPN works abroad too",
        "old": "An outdated page about the old VPN gateway and its password rules",
        "desk": "The IT desk is on the second floor, room 2.14, open on working days",
    }
    index = _index(texts)
    index.remove("old")  # in place: bm25s rebuilds from the rest
    texts["leave"] = "Annual leave is 30 days from the fifth year; leave requests go to HR"
    index.add("leave", "default", tokenize(texts["leave"]))
    del texts["old"]

    ids = list(texts)
    reference = bm25s.BM25(method="lucene", k1=K1, b=B)
    reference.index([terms(tokenize(texts[i])) for i in ids], show_progress=False)
    for question in ("How do I reset my VPN password?", "leave days", "IT desk room"):
        query = terms(tokenize(question))
        expected = reference.get_scores(query)
        found = {chunk_id: score for chunk_id, score, _ in index.search(query, 10, gram_weight=0)}
        assert found, question
        for position, chunk_id in enumerate(ids):
            assert np.isclose(found.get(chunk_id, 0.0), expected[position], rtol=1e-4), (
                question,
                chunk_id,
            )


def test_inflected_english_words_match_their_stem() -> None:
    index = _index(
        {
            "vpn": "Resetting the VPN profile clears the cached certificates",
            "leave": "Annual leave requests are approved by your manager",
        }
    )
    for question in ("How do I reset the VPN?", "VPN resets", "certificate cache"):
        assert [i for i, _, _ in index.search(tokenize(question), 1)] == ["vpn"], question
    assert [i for i, _, _ in index.search(tokenize("who approves leave"), 1)] == ["leave"]
    hits = index.search(tokenize("resetting the VPN profile"), 1)
    assert hits[0][2] == 1.0  # every word of the question is in the chunk: full coverage


def test_stored_tokens_are_words_and_the_index_stems_them() -> None:
    """The catalog keeps `tokenize`'s words; stemming happens in the index, at indexing and at
    query time alike, so a stemmer change needs no re-tokenizing of stored chunks."""
    assert tokenize("Resetting the VPN, GC-412 errors") == [
        "resetting",
        "vpn",
        "gc",
        "412",
        "error",
        "gc-412",
    ]
    assert terms(["resetting", "profiles", "gc-412", "412", "报销", "vpn"]) == [
        "reset",
        "profil",
        "gc-412",
        "412",
        "报销",
        "vpn",
    ]


def test_a_lone_letter_of_an_apostrophe_matches_nothing() -> None:
    # "doesn't" and "company's" leave a "t" and an "s": rare in passages, so their idf is high,
    # and a passage full of "isn't" and "can't" used to outrank the one the question is about.
    index = _index(
        {
            "notes": "It isn't late and wasn't early; it won't move and can't stop.",
            "projector": "The projector in room 4 needs the remote control.",
            "leave": "Annual leave requests go to your manager two weeks ahead.",
        }
    )
    question = tokenize("Why doesn't the projector turn on?")
    assert "t" in question  # stored and asked as before; only the index leaves it out
    assert [chunk_id for chunk_id, _, _ in index.search(question, 3)] == ["projector"]
    assert terms(["t", "s", "b2b", "x11"]) == ["b2b", "x11"]
