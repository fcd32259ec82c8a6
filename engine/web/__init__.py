"""Web lookup: fresh answers from the web when asked or allowed, safely (issue #8)."""

from engine.web.config import WebMode, WebSettings
from engine.web.guard import Guard, Refused
from engine.web.lookup import WebLookup, build_lookup, parse_request, time_sensitive
from engine.web.types import SearchHit, WebReport, WebSource

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
