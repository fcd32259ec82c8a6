"""Which language the asker wrote in (the phrases in both live in engine/catalog.py)."""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_LATIN = re.compile(r"[A-Za-z]")


def detect(text: str) -> str:
    """'zh' when the text is mostly Chinese, else 'en'.

    Chinese users mix in English terms, so a little Chinese counts double.
    """
    cjk = len(_CJK.findall(text))
    latin_words = len(_LATIN.findall(text)) / 4
    return "zh" if cjk and cjk * 2 >= latin_words else "en"
