"""Web lookup: fresh answers from the web when asked or allowed, safely (issue #8).

The names below load on first use, so that reading `engine.web.config` (the settings do, in
every CLI command) does not import httpx and the lookup machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.web.config import WebMode, WebSettings
    from engine.web.guard import Guard, Refused
    from engine.web.lookup import WebLookup, build_lookup, parse_request, time_sensitive
    from engine.web.types import SearchHit, WebReport, WebSource

_HOME = {
    "WebMode": "engine.web.config",
    "WebSettings": "engine.web.config",
    "Guard": "engine.web.guard",
    "Refused": "engine.web.guard",
    "WebLookup": "engine.web.lookup",
    "build_lookup": "engine.web.lookup",
    "parse_request": "engine.web.lookup",
    "time_sensitive": "engine.web.lookup",
    "SearchHit": "engine.web.types",
    "WebReport": "engine.web.types",
    "WebSource": "engine.web.types",
}

__all__ = [
    "Guard",
    "Refused",
    "SearchHit",
    "WebLookup",
    "WebMode",
    "WebReport",
    "WebSettings",
    "WebSource",
    "build_lookup",
    "parse_request",
    "time_sensitive",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine.web' has no attribute {name!r}")
    return getattr(import_module(home), name)
