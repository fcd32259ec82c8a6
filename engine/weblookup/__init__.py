"""Web lookup: fresh answers from the web when asked or allowed, safely (issue #8).

The names below load on first use, so that reading `engine.weblookup.config` (the settings do, in
every CLI command) does not import httpx and the lookup machinery.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.weblookup.config import WebMode, WebSettings
    from engine.weblookup.guard import Guard, Refused
    from engine.weblookup.lookup import WebLookup, build_lookup, parse_request, time_sensitive
    from engine.weblookup.types import SearchHit, WebReport, WebSource

_HOME = {
    "WebMode": "engine.weblookup.config",
    "WebSettings": "engine.weblookup.config",
    "Guard": "engine.weblookup.guard",
    "Refused": "engine.weblookup.guard",
    "WebLookup": "engine.weblookup.lookup",
    "build_lookup": "engine.weblookup.lookup",
    "parse_request": "engine.weblookup.lookup",
    "time_sensitive": "engine.weblookup.lookup",
    "SearchHit": "engine.weblookup.types",
    "WebReport": "engine.weblookup.types",
    "WebSource": "engine.weblookup.types",
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
        raise AttributeError(f"module 'engine.weblookup' has no attribute {name!r}")
    return getattr(import_module(home), name)
