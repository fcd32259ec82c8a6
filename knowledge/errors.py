"""Errors of the knowledge package, in one place.

    KnowledgeError
    ├── SourceError     a source as a whole cannot be listed: a refresh removes nothing
    └── LoadError       one document cannot be read: it keeps its last good version
"""

from __future__ import annotations


class KnowledgeError(Exception):
    """Anything the knowledge package reports in words."""


class SourceError(KnowledgeError):
    """The source as a whole cannot be listed (folder missing, API unreachable, no access):
    a refresh that meets it keeps every document it had and removes none."""


class LoadError(KnowledgeError):
    """One document cannot be read (unsupported, too large, a parse failure, no permission);
    the message says why and, where there is one, what to do."""
