"""Logging: text or JSON lines, each with the request id of the message it is about, and
redaction of personal data and secrets (engine/privacy.py) before anything is written, at every
level."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime

from engine.privacy import Redactor
from engine.trace import request_id

__all__ = ["Redactor", "setup_logging"]


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
                "request_id": getattr(record, "request_id", ""),
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
