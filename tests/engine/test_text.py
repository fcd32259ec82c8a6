from __future__ import annotations

import pytest

from engine.catalog import phrase
from engine.text import clip, detect, estimate_tokens, split_text


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("How do I reset my VPN password?", "en"),
        ("VPN 密码怎么重置？", "zh"),
        ("报销需要多少天内提交", "zh"),
        ("请问 how to connect 到 wifi", "zh"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect(text) == language


def test_phrases_exist_in_both_languages() -> None:
    assert "too long" in phrase("too_long", "en", size=9000, limit=4000)
    assert "9000" in phrase("too_long", "zh", size=9000, limit=4000)
    assert phrase("empty", "zh") != phrase("empty", "en")


def test_split_respects_limit_and_keeps_all_text() -> None:
    text = "\n\n".join(f"Paragraph {i}. " + "word " * 40 for i in range(20))
    pieces = split_text(text, 500)
    assert all(len(p) <= 500 for p in pieces)
    assert " ".join(pieces).split() == text.split()


def test_split_chinese_at_sentence_end() -> None:
    text = "这是一个句子。" * 100
    pieces = split_text(text, 50)
    assert all(len(p) <= 50 for p in pieces)
    assert all(p.endswith("。") for p in pieces)


def test_clip_and_estimate() -> None:
    assert clip("abcdef", 4) == "abc…"
    assert clip("abc", 4) == "abc"
    assert estimate_tokens("中文") == 4  # errs high: small-vocabulary tokenizers spend ~1.8
    assert estimate_tokens("abcdefgh") == 3
