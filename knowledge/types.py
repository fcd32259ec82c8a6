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
    score: float  # calibrated relevance in [0, 1]; higher is closer; compare with min_score
    chunk_id: str
    collection: str = ""  # the knowledge collection the passage belongs to


@dataclass(frozen=True, slots=True)
class Audience:
    """Who may read a document: anyone who sees its collection (`everyone`), everyone of one
    tenant (`tenant`), or the listed principals, each "platform:type:id" — e.g.
    "feishu:chat:oc_…", "feishu:user:ou_…", "feishu:department:od_…". An empty audience (not
    everyone, no tenant, no principals) lets nobody read: unknown permissions fail closed."""

    everyone: bool = False
    tenant: str = ""  # "platform:tenant_key": anyone of that tenant
    principals: frozenset[str] = frozenset()


EVERYONE = Audience(everyone=True)


@dataclass(frozen=True, slots=True)
class Document:
    """One loaded document before chunking."""

    uri: str  # path or URL, unique within a source
    title: str
    text: str
    kind: str  # markdown | text | pdf | faq
    modified_at: datetime | None = None
    url: str = ""  # where a reader opens it (web pages); "" for files
    audience: Audience | None = None  # None = the source's audience


@dataclass(frozen=True, slots=True)
class Chunk:
    """One piece of a document, ready to embed."""

    text: str
    section: str
    index: int
    tokens: int


@dataclass(slots=True)
class RefreshReport:
    """What one refresh (or ingest) run of a source did."""

    source: str = ""
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # uri -> error
    chunks: int = 0  # chunks written for added and changed documents
    embedded: int = 0  # of those, embedded now (the rest reused by content hash)
    seconds: float = 0.0
    error: str = ""  # the whole run failed (source unreachable): nothing was removed
    skipped: bool = False  # another refresh of the source was running; this one did nothing

    @property
    def result(self) -> str:
        """ok | partial (some documents failed) | failed (the run itself failed) | skipped."""
        if self.skipped:
            return "skipped"
        if self.error:
            return "failed"
        return "partial" if self.failed else "ok"

    # The first cut's names, still used by `teambot ingest`.
    @property
    def files_seen(self) -> int:
        return self.added + self.changed + self.unchanged + len(self.failed)

    @property
    def files_indexed(self) -> int:
        return self.added + self.changed

    @property
    def files_unchanged(self) -> int:
        return self.unchanged

    @property
    def files_removed(self) -> int:
        return self.removed

    def summary(self) -> str:
        """One line for logs and the CLI."""
        text = (
            f"{self.source}: {self.added} added, {self.changed} changed, {self.removed} removed, "
            f"{self.unchanged} unchanged, {len(self.failed)} failed; {self.chunks} chunks "
            f"({self.embedded} embedded) in {self.seconds:.1f} s"
        )
        return f"{text}; run failed: {self.error}" if self.error else text


IngestReport = RefreshReport


@dataclass(frozen=True, slots=True)
class SourceStatus:
    """A source as `teambot sources` shows it."""

    name: str
    kind: str
    collection: str
    documents: int
    chunks: int
    failed: int
    last_run: datetime | None
    result: str  # ok | partial | failed | running | never
    configured: bool = True  # in teambot.toml or added at run time (not an orphan of either)
    origin: str = "config"  # config | runtime | upload | sample | faq (see knowledge.ORIGINS)
    error: str = ""  # the latest run's error, or its first failed documents
    location: str = ""  # folder, URL or sitemap
    schedule: str = ""  # cron; "" = never refreshed on a schedule
