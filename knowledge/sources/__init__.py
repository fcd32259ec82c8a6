"""Knowledge source kinds behind one door (`base.SourceReader`), registered by name
(`kinds.SourceKinds`). The built-in kinds: directory, url, sitemap.

Importing this package stays light (no HTTP client, no parser): a kind's module loads when
the registry of built-in kinds is first built.
"""

from __future__ import annotations

from knowledge.errors import LoadError, SourceError
from knowledge.sources.base import DocumentRef, NoOptions, SourceKind, SourceReader
from knowledge.sources.kinds import SourceKinds, UnknownKindError

__all__ = [
    "DocumentRef",
    "LoadError",
    "NoOptions",
    "SourceError",
    "SourceKind",
    "SourceKinds",
    "SourceReader",
    "UnknownKindError",
    "builtin_kinds",
]


def builtin_kinds() -> SourceKinds:
    """A registry holding the kinds this package ships."""
    from knowledge.sources.directory import DIRECTORY
    from knowledge.sources.pages import SITEMAP, URL

    return SourceKinds((DIRECTORY, URL, SITEMAP))
