"""The boundary's hygiene: whatever a sender put in a field becomes valid, bounded text, and
whatever they put in a number field becomes a number or a sensible default.

Bidi embedding, override and isolate controls are taken out of every text (they would show
agents a question reordered); a message with nothing visible in it is empty (`message`).

`Inbound` runs every field through here when it is built, so nothing downstream (the embedding
tokenizer, PostgreSQL, the logs) ever sees a lone surrogate, a NUL or a 10 MB display name.
The converters use `timestamp` and `text` for the platform's raw fields, which may be numbers
where strings belong, strings where numbers belong, or absurd values (1e20, inf, "abc").
"""

from __future__ import annotations

import hashlib
import math
import re
import unicodedata
from datetime import UTC, datetime
from typing import Any

MAX_TEXT = 100_000  # characters of a message; the core's own limit (max_message_chars) is lower
MAX_ID = 255  # the database columns that hold ids and names are String(255)
MAX_NAME = 255

# C0 and C1 control characters except tab and newline (carriage returns become newlines first)
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Bidi embeddings, overrides and isolates (LRE … RLO, LRI … PDI): they reorder what follows, so a
# question can show agents other words than it holds ("Trojan Source"); a plain text needs none
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# Blank although not whitespace to Python: Hangul fillers, the braille blank
_BLANK = frozenset("\u115f\u1160\u3164\uffa0\u2800")
_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC).timestamp()
_LATEST = datetime(2100, 1, 1, tzinfo=UTC).timestamp()


def text(value: Any, limit: int = MAX_TEXT) -> str:
    """Valid Unicode without NULs and control characters, at most `limit` characters.

    A surrogate pair written as two code points is joined, a lone surrogate becomes U+FFFD."""
    if value is None:
        return ""
    if not isinstance(value, str):
        value = str(value) if isinstance(value, (int, float, bool)) else ""
    if not value.isascii():
        value = value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    value = _CONTROL.sub("", value)
    if not value.isascii():
        value = _BIDI.sub("", value)
    return str(value[:limit])


def blank(value: str) -> bool:
    """Nothing a reader would see: only whitespace and invisible characters (zero-width spaces
    and joiners, direction marks, the BOM, fillers)."""
    return all(
        char.isspace() or char in _BLANK or unicodedata.category(char) in ("Cf", "Cc", "Zs")
        for char in value
    )


def message(value: Any, limit: int = MAX_TEXT) -> str:
    """`text` for what a person wrote: empty when nothing in it is visible, so a question of
    zero-width characters is an empty question, not one to answer."""
    cleaned = text(value, limit)
    return "" if blank(cleaned) else cleaned


def ident(value: Any) -> str:
    """An id or key: clean text that fits its column. A longer one keeps its start and a digest,
    so two different long ids never collapse into one (dedupe depends on it)."""
    cleaned = text(value, limit=MAX_TEXT).replace("\n", " ").replace("\t", " ")
    if len(cleaned) <= MAX_ID:
        return cleaned
    digest = hashlib.sha256(cleaned.encode()).hexdigest()[:32]
    return f"{cleaned[: MAX_ID - 33]}#{digest}"


def number(value: Any) -> float | None:
    """A finite number from a number or a numeric string; None for anything else."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        result = float(value) if abs(value) < 1e300 else math.inf
    elif isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            return None
    else:
        return None
    return result if math.isfinite(result) else None


def timestamp(value: Any, *, millis: bool = False) -> datetime | None:
    """An aware UTC datetime from epoch seconds (or milliseconds), or None when the value is not
    a number or lies outside 2000-2100 (a forged 1e20 must not crash or date a message)."""
    seconds = number(value)
    if seconds is None:
        return None
    if millis:
        seconds /= 1000
    if not _EARLIEST <= seconds < _LATEST:
        return None
    return datetime.fromtimestamp(seconds, UTC)


def when(value: Any, *, millis: bool = False) -> datetime:
    """`timestamp`, or now when the platform's value is missing or nonsense."""
    return timestamp(value, millis=millis) or datetime.now(UTC)


def storable(value: str) -> str:
    """Text any database accepts: PostgreSQL refuses NUL in text columns."""
    if "\x00" not in value and value.isascii():
        return value
    return text(value, limit=len(value) + 1)
