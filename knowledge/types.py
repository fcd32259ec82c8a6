"""Public types of the knowledge package."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Passage:
    """A retrieved chunk; citations in answers are built from these."""

    text: str
    title: str
    source: str  # the knowledge source's name
    location: str  # URL or file path
    section: str  # heading path, " > "-joined; "" when none
    score: float  # cosine similarity in [0, 1]; higher is closer
    chunk_id: str


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded document before chunking."""

    uri: str  # path or URL, unique within a source
    title: str
    text: str
    kind: str  # markdown | text
    modified_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, ready to embed."""

    text: str
    section: str
    index: int
    tokens: int


@dataclass(slots=True)
class IngestReport:
    """What one ingest run did."""

    files_seen: int = 0
    files_indexed: int = 0
    files_unchanged: int = 0
    files_removed: int = 0  # documents gone from the source, deleted from the index
    chunks: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # uri -> error
    seconds: float = 0.0
