"""Plain-text helpers the core and the adapters share: token estimates and splitting."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def estimate_tokens(text: str) -> int:
    """A cheap, tokenizer-free token estimate: one per CJK character, one per ~4 other chars."""
    cjk = len(_CJK.findall(text))
    return cjk + (len(text) - cjk + 3) // 4


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
