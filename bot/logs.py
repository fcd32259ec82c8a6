"""Logging: text or JSON lines, each with the request id of the message it is about, and
redaction of personal data and secrets before anything is written."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from urllib.parse import unquote_plus

from engine.trace import request_id

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # secrets and tokens first: they can contain digits that look like phone numbers
    (re.compile(r"\b(?:xox[abposr]|xapp)-[A-Za-z0-9-]+"), "[token]"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{12,}"), "[token]"),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), "Bearer [token]"),
    (
        re.compile(
            r"(?i)\b(password|passwd|secret|token|api[_-]?key|access[_-]?token|app[_-]?secret)"
            r"(\"?\s*[:=]\s*\"?)[^\s\",;&]+"
        ),
        r"\1\2[secret]",
    ),
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    # Chinese resident ID: 17 digits and a check digit or X
    (re.compile(r"(?<![\dA-Za-z])\d{17}[\dXx](?![\dA-Za-z])"), "[id-number]"),
    # mainland mobile numbers, optionally +86 / 0086, digits grouped by spaces, dashes or dots
    (
        re.compile(r"(?<!\d)(?:(?:\+|00)?86[\s.-]?)?1[3-9]\d[\s.-]?\d{4}[\s.-]?\d{4}(?!\d)"),
        "[phone]",
    ),
    # other international numbers written with a leading +
    (
        re.compile(r"(?<![\w+])\+\d{1,3}[\s.-]?\(?\d{1,4}\)?(?:[\s.-]?\d{2,4}){2,4}(?!\d)"),
        "[phone]",
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


def _decoded(match: re.Match[str]) -> str:
    return unquote_plus(match.group(0), errors="replace")


class Redactor:
    """Masks personal data and known secret values in a string."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        values = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)
        self._secrets = re.compile("|".join(re.escape(v) for v in values)) if values else None

    def __call__(self, text: str) -> str:
        text = _ESCAPED.sub(_decoded, text.translate(_FOLD))
        if self._secrets is not None:
            text = self._secrets.sub("[secret]", text)
        for pattern, replacement in _PATTERNS:
            text = pattern.sub(replacement, text)
        return text


class _AtLeast(logging.Filter):
    def __init__(self, level: int) -> None:
        super().__init__()
        self._level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self._level


class _Formatter(logging.Formatter):
    def __init__(self, *, json_lines: bool, redactor: Redactor | None) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")
        self._json = json_lines
        self._redact = redactor

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = request_id.get()
        if self._json:
            entry = {
                "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                    timespec="milliseconds"
                ),
                "level": record.levelname,
                "logger": record.name,
                "request_id": record.request_id,
                "message": record.getMessage(),
            }
            if record.exc_info:
                entry["exception"] = self.formatException(record.exc_info)
            text = json.dumps(entry, ensure_ascii=False)
        else:
            text = super().format(record)
        return self._redact(text) if self._redact else text


def setup_logging(
    level: str, *, json_lines: bool, redact: bool, secrets: Iterable[str] = ()
) -> None:
    """Configure the root logger (replacing earlier handlers) for the service or a command."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        _Formatter(json_lines=json_lines, redactor=Redactor(secrets) if redact else None)
    )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own loggers go through the same handler, so they are redacted too
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    # Loggers that print every URL (query strings carry questions, e-mails, search terms), and
    # APScheduler's line per job run (the recovery sweep runs every few seconds), only speak up
    # for problems, unless the operator asked for DEBUG
    quiet = logging.DEBUG if logging.getLevelName(level) == logging.DEBUG else logging.WARNING
    for name in ("httpx", "httpcore", "uvicorn.access", "apscheduler.executors.default"):
        logger = logging.getLogger(name)
        logger.setLevel(quiet)
        # uvicorn sets its loggers' levels again after this: a filter stays
        for earlier in [f for f in logger.filters if isinstance(f, _AtLeast)]:
            logger.removeFilter(earlier)
        logger.addFilter(_AtLeast(quiet))
