"""Personal data and secrets found in text: masked in every log line (bot/logs.py) and taken out of
web search queries before they leave the machine (engine/weblookup/lookup.py).

What is found: tokens and `key=value` secrets, configured secret values, e-mail addresses,
Chinese resident ID numbers, bank-card numbers (16-19 digits, grouped or not, that pass the Luhn
check, so an order number is left alone), mainland mobile numbers and other `+` numbers. Text is
percent-decoded and full-width characters folded to ASCII first, repeatedly, so neither
`%EF%BC%91%EF%BC%93%EF%BC%98…` (URL-encoded full-width digits) nor `%2540` hides a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from urllib.parse import unquote_plus

_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
# (pattern, its mask in a log line, what is left of it in a search query). Secrets and tokens
# first: they can contain digits that look like phone numbers.
_SECRETS: list[tuple[re.Pattern[str], str, str]] = [
    (re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]+"), "[token]", " "),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "[token]", " "),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [token]", " "),
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|token|api[_-]?key|access[_-]?token|app[_-]?secret)"
            r"(\"?\s*[:=]\s*\"?)[^\s\",;&]+"
        ),
        r"\1\2[secret]",
        r"\1 ",
    ),
    (_EMAIL, "[email]", " "),
    # Chinese resident ID: 17 digits and a check digit or X
    (re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])"), "[id-number]", " "),
]
# 16-19 digits, optionally grouped by single spaces or dashes (4-4-4-4, 6-13 …); "卡号6222…"
# is a card too, so only ASCII letters and digits around it make it part of something else
_CARD = re.compile(r"(?<![0-9A-Za-z+])\d(?:[ -]?\d){15,18}(?![0-9A-Za-z])")
_PHONES: list[tuple[re.Pattern[str], str, str]] = [
    # mainland mobile numbers, optionally +86 / 0086, digits grouped by spaces, dashes or dots
    (
        re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s.-]?)?1[3-9]\d[\s.-]?\d{4}[\s.-]?\d{4}(?!\d)"),
        "[phone]",
        " ",
    ),
    # other international numbers written with a leading +
    (
        re.compile(r"(?<![\w+])\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?!\d)"),
        "[phone]",
        " ",
    ),
]
# Full-width digits, letters and the signs of addresses and numbers (１３８, ＠, ＋) folded to
# ASCII, so the patterns see them; Chinese punctuation (，。：) stays as written
_FOLD = {ord(c): ord(c) - 0xFEE0 for c in "０１２３４５６７８９＠＋．－＿％"} | {
    code: code - 0xFEE0 for code in (*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B))
}
# A token with percent escapes (a URL, a query string): decoded before redaction, so
# alice.wong%40example.com and %2B86%20138… are caught
_ESCAPED = re.compile(r"[^\s\"'<>]*%[0-9A-Fa-f]{2}[^\s\"'<>]*")
_ROUNDS = 3  # %25-escaped twice is still caught; more than that is not a URL anyone logs


def luhn(digits: str) -> bool:
    """Whether a string of digits passes the Luhn check that every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(replacement: str) -> Callable[[re.Match[str]], str]:
    def masked(match: re.Match[str]) -> str:
        digits = match.group(0).replace(" ", "").replace("-", "")
        return replacement if luhn(digits) else match.group(0)

    return masked


def _decoded(match: re.Match[str]) -> str:
    return unquote_plus(match.group(0), errors="replace")


def readable(text: str) -> str:
    """`text` percent-decoded and full-width folded until neither changes it (a few rounds):
    what a reader of the line would see the number as."""
    for _ in range(_ROUNDS):
        if "%" not in text and text.isascii():  # most log lines: nothing to decode or fold
            break
        folded = _ESCAPED.sub(_decoded, text.translate(_FOLD)).translate(_FOLD)
        if folded == text:
            break
        text = folded
    return text


class Redactor:
    """Masks personal data and known secret values in a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        return self._mask(readable(text), scrub=False)

    def scrub(self, text: str) -> str:
        """`text` with personal data and secrets taken out altogether (no labels left behind),
        spaces tidied: a search query that says what was asked, not who asked it."""
        return " ".join(self._mask(readable(text), scrub=True).split())

    def _mask(self, text: str, *, scrub: bool) -> str:
        if self._secrets is not None:
            text = self._secrets.sub(" " if scrub else "[secret]", text)
        for pattern, masked, scrubbed in _SECRETS:
            if pattern is _EMAIL and "@" not in text:  # the costliest pattern, rarely needed
                continue
            text = pattern.sub(scrubbed if scrub else masked, text)
        text = _CARD.sub(_card(" " if scrub else "[card]"), text)
        for pattern, masked, scrubbed in _PHONES:
            text = pattern.sub(scrubbed if scrub else masked, text)
        return text
