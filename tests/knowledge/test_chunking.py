from __future__ import annotations

import itertools

import pytest

from knowledge import Embedder, KnowledgeBase
from knowledge.chunking import (
    chunk_markdown,
    chunk_text,
    embed_text,
    hard_split,
    markdown_sections,
    markdown_title,
    split_sentences,
)
from knowledge.types import Chunk
from tests.knowledge.conftest import count_words

HANDBOOK = """\
# Handbook

Welcome to the handbook.

## VPN

Use the VPN from home.

### Reset

Quit the client. Start it again.

```bash
# not a heading
ipconfig /flushdns
```

## Leave

You get 20 days.
"""


def test_headings_become_section_paths() -> None:
    chunks = chunk_markdown(HANDBOOK, count_tokens=count_words)

    assert [c.section for c in chunks] == [
        "Handbook",
        "Handbook > VPN",
        "Handbook > VPN > Reset",
        "Handbook > Leave",
    ]
    assert [c.index for c in chunks] == [0, 1, 2, 3]
    assert "# not a heading" in chunks[2].text  # code fences are not split on "#"
    assert chunks[3].text == "You get 20 days."


def test_title_and_sections_ignore_fenced_hashes() -> None:
    text = "```\n# fake\n```\n\n# Real title\n\nbody\n"
    assert markdown_title(text) == "Real title"
    assert [s.path for s in markdown_sections(text)] == ["", "Real title"]


def test_heading_levels_pop_back() -> None:
    text = "# A\n## B\n### C\nc\n## D\nd\n# E\ne\n"
    assert [s.path for s in markdown_sections(text)] == ["A > B > C", "A > D", "E"]


def test_sentences_split_on_chinese_and_english_punctuation() -> None:
    text = (
        "费用发生后30天内提交。超过90天不再受理！怎么办？请联系财务；谢谢。"
        "Then ask HR. Version 3.5 is fine!"
    )
    assert split_sentences(text) == [
        "费用发生后30天内提交。",
        "超过90天不再受理！",
        "怎么办？",
        "请联系财务；",
        "谢谢。",
        "Then ask HR.",
        "Version 3.5 is fine!",
    ]


def test_sentences_keep_urls_decimals_and_list_markers() -> None:
    text = "5. Open https://helpdesk.example.com/new?type=vpn now. It costs 2.50 euros."
    assert split_sentences(text) == [
        "5. Open https://helpdesk.example.com/new?type=vpn now.",
        "It costs 2.50 euros.",
    ]


def test_closing_quotes_stay_with_their_sentence() -> None:
    assert split_sentences("他说：“好的。”然后走了。") == ["他说：“好的。”", "然后走了。"]


def _long_section(sentences: int) -> str:
    body = " ".join(f"Sentence number {i} talks about the VPN gateway." for i in range(sentences))
    return f"# Doc\n\n{body}\n"


def test_chunks_are_bounded_by_the_token_counter() -> None:
    chunks = chunk_markdown(
        _long_section(60), count_tokens=count_words, chunk_tokens=50, chunk_overlap=10
    )

    assert len(chunks) > 5
    assert all(count_words(c.text) <= 50 for c in chunks)
    assert all(c.tokens == count_words(c.text) for c in chunks)


def test_consecutive_chunks_overlap_by_whole_sentences() -> None:
    chunks = chunk_markdown(
        _long_section(60), count_tokens=count_words, chunk_tokens=50, chunk_overlap=10
    )

    for previous, current in itertools.pairwise(chunks):
        last_sentence = split_sentences(previous.text)[-1]
        assert current.text.startswith(last_sentence)
    seen = [s for c in chunks for s in split_sentences(c.text)]
    assert sorted(set(seen), key=seen.index) == split_sentences(_long_section(60)[7:])


def test_no_overlap_when_disabled() -> None:
    chunks = chunk_markdown(
        _long_section(30), count_tokens=count_words, chunk_tokens=50, chunk_overlap=0
    )
    sentences = [s for c in chunks for s in split_sentences(c.text)]
    assert len(sentences) == 30


def test_chinese_text_packs_without_spaces() -> None:
    text = "# 报销\n\n" + "费用发生后三十天内提交报销申请。" * 20
    chunks = chunk_markdown(text, count_tokens=count_words, chunk_tokens=60, chunk_overlap=16)

    assert len(chunks) > 1
    assert all(count_words(c.text) <= 60 for c in chunks)
    assert "。费用" in chunks[0].text  # sentences joined directly, no space
    assert chunks[1].text.startswith("费用发生后三十天内提交报销申请。")  # overlap


def test_overlong_sentence_is_hard_split() -> None:
    sentence = " ".join(f"word{i}" for i in range(120))
    pieces = hard_split(sentence, count_words, 50)

    assert [count_words(p) for p in pieces] == [50, 50, 20]
    assert " ".join(pieces) == sentence

    chunks = chunk_text(sentence, count_tokens=count_words, chunk_tokens=50, chunk_overlap=10)
    assert [c.tokens for c in chunks] == [50, 50, 20]


def test_overlong_chinese_sentence_and_unbroken_word_are_split() -> None:
    assert [len(p) for p in hard_split("字" * 130, count_words, 50)] == [50, 50, 30]
    blob = "x" * 500  # one "token" for count_words but too long for a char budget
    pieces = hard_split(blob, len, 200)
    assert "".join(pieces) == blob
    assert max(len(p) for p in pieces) <= 200


def test_lists_stay_one_item_per_line() -> None:
    text = "# Steps\n\n1. Quit the client.\n2. Reset the profile.\n   It takes a minute.\n"
    text += "3. Sign in.\n"
    [chunk] = chunk_markdown(text, count_tokens=count_words)
    assert chunk.text.splitlines() == [
        "1. Quit the client.",
        "2. Reset the profile. It takes a minute.",
        "3. Sign in.",
    ]


def test_plain_text_has_no_section() -> None:
    chunks = chunk_text("One. Two.\n\nThree.", count_tokens=count_words)
    assert [(c.section, c.text) for c in chunks] == [("", "One. Two.\nThree.")]
    assert chunk_text("  \n", count_tokens=count_words) == []


def test_embed_text_prefixes_title_and_section_once() -> None:
    chunk = Chunk(text="Quit the client.", section="VPN > Reset", index=0, tokens=3)
    assert embed_text("Handbook", chunk) == "Handbook > VPN > Reset\nQuit the client."
    titled = Chunk(text="x", section="Handbook > VPN", index=0, tokens=1)
    assert embed_text("Handbook", titled) == "Handbook > VPN\nx"
    assert embed_text("", Chunk(text="x", section="", index=0, tokens=1)) == "x"


@pytest.mark.parametrize("name", sorted(p.name for p in KnowledgeBase.sample_path().glob("*.md")))
def test_sample_chunks_fit_the_real_tokenizer(embedder: Embedder, name: str) -> None:
    text = (KnowledgeBase.sample_path() / name).read_text(encoding="utf-8")
    chunks = chunk_markdown(text, count_tokens=embedder.count_tokens, chunk_tokens=200)

    assert chunks
    for chunk in chunks:
        assert chunk.tokens == embedder.count_tokens(chunk.text) <= 200
        assert chunk.section
        # title line + chunk still fits the model's 256-wordpiece window
        assert embedder.count_tokens(embed_text("", chunk)) + 2 <= 256
