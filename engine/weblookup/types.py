"""What a web lookup hands the core: the sources it found and what went wrong."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One provider result, before its page is fetched."""

    title: str
    url: str
    snippet: str = ""


@dataclass(frozen=True, slots=True)
class WebSource:
    """A web result ready for the prompt: main text (or the provider's snippet) and fetch time."""

    title: str
    url: str
    text: str
    fetched_at: str  # ISO 8601, UTC, seconds
    full_page: bool = True  # False: only the provider's snippet could be used


@dataclass(frozen=True, slots=True)
class WebReport:
    """The outcome of one lookup. `unavailable`: the provider failed; `refused`: URLs the guard
    would not open (private addresses, denied domains)."""

    query: str
    sources: tuple[WebSource, ...] = ()
    unavailable: bool = False
    off: bool = False  # asked with /web in a chat where the web is off: nothing was searched
    refused: tuple[str, ...] = ()
    error: str = ""
    reason: str = ""  # requested | tool | rule
    seconds: float = 0.0
    cached: bool = False
