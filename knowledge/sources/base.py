"""The door every knowledge source kind walks through: list the documents, read one.

A kind (directory, url, sitemap, git, feishu_wiki, …) is one module that exports a `SourceKind`
record: its name, a bilingual label, the model of its own keys in `[[knowledge.sources]]`, how
a pasted link becomes its location, and `build`, which makes a `SourceReader` for one
configured source. The ingestor drives every reader the same way:

1. `documents()` lists every document with a cheap `version` (an edit time, a revision, a blob
   SHA). A listing that cannot be completed raises `SourceError`, and the refresh then removes
   nothing;
2. `read(ref)` is called only for documents whose version changed since the last good read (or
   whose version is unknown: ""), and raises `LoadError` with the fix in words when that one
   document cannot be read; its last good version stays indexed.

Readers do their own network I/O asynchronously and push parsing to worker threads or the
parsing sandbox; they never block the event loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydantic import BaseModel

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.types import Audience, Document

__all__ = [
    "DocumentRef",
    "LoadError",
    "NoOptions",
    "SourceError",
    "SourceKind",
    "SourceReader",
]


@dataclass(frozen=True, slots=True)
class DocumentRef:
    """One document as a listing names it, before its content is read."""

    uri: str  # unique within the source and stable across refreshes (a path, a node token)
    title: str = ""
    url: str = ""  # where a reader opens it; citations link here
    version: str = ""  # changes whenever the content does; "" = unknown, read it every time
    modified_at: datetime | None = None
    audience: Audience | None = None  # None = the source's own audience
    meta: dict[str, str] = field(default_factory=dict, compare=False)  # the kind's own notes


class SourceReader(Protocol):
    """What the ingestor asks of one configured source."""

    def documents(self) -> AsyncIterator[DocumentRef]:
        """Every document of the source, each once; raises `SourceError` if the listing cannot
        be completed (never yields a partial listing silently)."""
        ...

    async def read(self, ref: DocumentRef) -> Document:
        """The content of one listed document; raises `LoadError` with the reason."""
        ...

    async def aclose(self) -> None:
        """Release clients and connections (called once after a refresh)."""
        ...


class NoOptions(BaseModel):
    """A kind with no keys of its own."""

    model_config = {"extra": "forbid"}


Build = Callable[[SourceSettings, Any], SourceReader]


def _same(location: str) -> str:
    return location.strip()


@dataclass(frozen=True, slots=True)
class SourceKind:
    """One kind of knowledge source, registered once in `knowledge.sources.kinds`."""

    name: str  # the `kind` in `[[knowledge.sources]]`
    label: str  # bilingual, for the console and the CLI: "飞书知识库 / Feishu wiki"
    location_help: str  # what `location` holds, with an example (bilingual where shown)
    build: Build  # (source, its validated options) -> reader
    options: type[BaseModel] = NoOptions  # the kind's own keys in the source's `options`
    parse_location: Callable[[str], str] = _same  # a pasted link -> the location to store
    scheduled: bool = True  # re-read on the source's cron (False: only on demand)
