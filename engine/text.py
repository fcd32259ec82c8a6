"""Plain-text helpers the core and the adapters share: token estimates, splitting, and which
language the asker wrote in (the phrases in both live in engine/catalog.py)."""

from __future__ import annotations

import math
import re

# Tokens per character by script, generous on purpose: an estimate that runs short costs an
# answer (a 3,990-character Chinese question took ~1.3-1.8 tokens a character on a
# small-vocabulary model; Qwen-class tokenizers need ~0.7).
_CJK = re.compile(
    r"[\u3000-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]"
)  # CJK punctuation and full-width forms too: three UTF-8 bytes, often two tokens
_WIDE = re.compile(r"[\U00010000-\U0010ffff]")  # emoji and rare scripts: several bytes each
_OTHER = re.compile(r"[^\x00-\x7f]")


def estimate_tokens(text: str) -> int:
    """A tokenizer-free token count that errs high: 2 per CJK character (punctuation too), 3 per
    emoji, 1 per other non-ASCII character, 1 per 3 ASCII characters."""
    cjk = len(_CJK.findall(text))
    wide = len(_WIDE.findall(text))
    other = len(_OTHER.findall(text)) - cjk - wide
    ascii_chars = len(text) - cjk - wide - other
    return 2 * cjk + 3 * wide + other + math.ceil(ascii_chars / 3)


def split_text(text: str, max_chars: int) -> list[str]:
    """Split `text` into pieces of at most `max_chars`, preferring paragraph, then line, then
    sentence boundaries, so a platform's message size limit is never exceeded."""
    if max_chars <= 0:
        raise ValueError("max_chars must be positive")
    pieces: list[str] = []
    rest = text
    while len(rest) > max_chars:
        window = rest[:max_chars]
        cut = -1
        for sep in ("\n\n", "\n", "。", ". ", "！", "？", "! ", "? ", " "):
            at = window.rfind(sep)
            if at > max_chars // 3:
                cut = at + len(sep)
                break
        if cut <= 0:
            cut = max_chars
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip("\n")
    if rest or not pieces:
        pieces.append(rest)
    return pieces


def clip(text: str, max_chars: int) -> str:
    """`text` cut to `max_chars` with an ellipsis when it was longer (for streaming edits)."""
    return text if len(text) <= max_chars else text[: max_chars - 1] + "…"


_CHINESE = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_LATIN = re.compile(r"[A-Za-z]")


def detect(text: str) -> str:
    """'zh' when the text is mostly Chinese, else 'en'.

    Chinese users mix in English terms, so a little Chinese counts double.
    """
    cjk = len(_CHINESE.findall(text))
    latin_words = len(_LATIN.findall(text)) / 4
    return "zh" if cjk and cjk * 2 >= latin_words else "en"
