"""Knowledge source kinds behind one door (`base.SourceReader`), registered by name
(`kinds.SourceKinds`). The built-in kinds: directory, url, sitemap, git, confluence, notion.

Importing this package stays light (no HTTP client, no parser): a kind's module loads when
the registry of built-in kinds is first built.
"""

from __future__ import annotations

from pathlib import Path

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


def builtin_kinds(data_dir: Path | None = None) -> SourceKinds:
    """A registry holding the kinds this package ships; kinds that keep files of their own
    (git's mirrors) keep them under `data_dir` (default ./data, beside the embedded index)."""
    from knowledge.sources.confluence import CONFLUENCE
    from knowledge.sources.directory import DIRECTORY
    from knowledge.sources.git import git_kind
    from knowledge.sources.notion import NOTION
    from knowledge.sources.pages import SITEMAP, URL

    git = git_kind((data_dir or Path("data")) / "git")
    return SourceKinds((DIRECTORY, URL, SITEMAP, git, CONFLUENCE, NOTION))
