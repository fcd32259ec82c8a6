"""The document catalog: which documents each source holds, their hashes, chunks and runs.

Four tables (declared here, migrated by Alembic in bot/migrations): `knowledge_sources` (one row
per source: where it came from, the settings of a source added at run time, last run, a lease
so that one change to a source runs at a time across processes), `knowledge_documents` (source,
uri, content hash, chunk ids and their lexical tokens, the document's own audience, last seen,
last indexed, status, error),
`knowledge_runs` (every run's report) and `knowledge_state` (one row: a generation that every
committed change bumps, so that every process notices any change with one cheap query).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Float,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from knowledge import audience as audiences
from knowledge.timestamps import UTCDateTime, utcnow
from knowledge.types import Audience, RefreshReport, SourceStatus

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
LEASE = timedelta(hours=2)  # a refresh holding a source longer than this is presumed dead


class CatalogBase(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SourceRow(CatalogBase):
    __tablename__ = "knowledge_sources"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    collection: Mapped[str] = mapped_column(String(64))
    running_since: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_result: Mapped[str] = mapped_column(String(16), default="never")
    generation: Mapped[int] = mapped_column(Integer, default=0)
    origin: Mapped[str] = mapped_column(String(16), default="config", server_default="config")
    spec: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class StateRow(CatalogBase):
    """One row: `generation` grows with every committed change to the knowledge."""

    __tablename__ = "knowledge_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    generation: Mapped[int] = mapped_column(Integer, default=0)


class DocumentRow(CatalogBase):
    __tablename__ = "knowledge_documents"
    __table_args__ = (UniqueConstraint("source", "uri"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    uri: Mapped[str] = mapped_column(String(2048))
    collection: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text, default="")
    content_hash: Mapped[str] = mapped_column(String(64), default="")
    # the listing's version (edit time, revision, blob SHA) + what shapes chunks and vectors, as of
    # the last good read: a listing with the same stamp skips reading the content
    version: Mapped[str] = mapped_column(String(256), default="", server_default="")
    chunk_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    tokens: Mapped[list[str]] = mapped_column(JSON, default=list)  # per chunk, space-joined
    # who may read it, when the document brings its own (platform permissions); NULL = its
    # source's audience (knowledge.audience)
    audience: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="ok")  # ok | failed
    error: Mapped[str] = mapped_column(Text, default="")
    modified_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_indexed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class RunRow(CatalogBase):
    __tablename__ = "knowledge_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime)
    result: Mapped[str] = mapped_column(String(16))
    added: Mapped[int] = mapped_column(Integer)
    changed: Mapped[int] = mapped_column(Integer)
    removed: Mapped[int] = mapped_column(Integer)
    unchanged: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    chunks: Mapped[int] = mapped_column(Integer)
    embedded: Mapped[int] = mapped_column(Integer)
    seconds: Mapped[float] = mapped_column(Float)
    error: Mapped[str] = mapped_column(Text, default="")
    failures: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)


@dataclass(frozen=True, slots=True)
class Known:
    """What the catalog remembers of one document."""

    uri: str
    content_hash: str
    chunk_ids: tuple[str, ...]
    status: str
    version: str = ""
    audience: Audience | None = None  # the document's own; None = its source's


@dataclass(frozen=True, slots=True)
class Indexed:
    """A document whose new chunks are written and ready to become live."""

    uri: str
    collection: str
    title: str
    content_hash: str
    chunk_ids: tuple[str, ...]
    tokens: tuple[str, ...]
    modified_at: datetime | None
    version: str = ""
    audience: Audience | None = None  # the document's own; None = its source's


@dataclass(frozen=True, slots=True)
class LiveEntry:
    """One document as the live index needs it: what should be live, under which audience."""

    id: int
    collection: str
    key: str  # audience key: "src:SOURCE" or "doc:HASH"
    audience: Audience | None  # the document's own (None: the source's)
    chunk_ids: list[str]


def key_of(source: str, audience: Audience | None) -> str:
    """The audience key of a document of `source` (its own audience, or None)."""
    return f"src:{source}" if audience is None else audiences.audience_key(audience)


def _own(data: Any) -> Audience | None:
    return None if data is None else audiences.load(data)


@dataclass(frozen=True, slots=True)
class LiveDocument:
    collection: str
    chunk_ids: list[str]
    tokens: list[str]


def _make_parent(path: str) -> None:
    Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True, slots=True)
class Registered:
    """A source as the catalog registered it: its origin, and its settings when added at run
    time (None for config-file sources, whose settings live in teambot.toml)."""

    name: str
    origin: str
    spec: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class DocumentInfo:
    """One document as the console lists it."""

    uri: str
    title: str
    chunks: int
    status: str
    error: str
    last_indexed_at: datetime | None
    audience: Audience | None = None  # the document's own; None = its source's


class SourceBusyError(RuntimeError):
    """Another change to the source held it longer than the caller would wait."""


async def _bump(conn: AsyncConnection) -> int:
    """Grow the knowledge generation inside the caller's transaction; the new value."""
    found = await conn.scalar(
        update(StateRow).values(generation=StateRow.generation + 1).returning(StateRow.generation)
    )
    if found is None:  # a catalog made by create_all (no migration seeded the row)
        await conn.execute(insert(StateRow).values(id=1, generation=1))
        return 1
    return int(found)


class Catalog:
    """Async access to the catalog tables."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # generations this process committed: its own changes are live here already, so a
        # reload that sees only these need not rebuild the live index
        self.produced: set[int] = set()

    @asynccontextmanager
    async def _changing(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that changes the knowledge: it bumps the generation when it commits."""
        async with self.engine.begin() as conn:
            yield conn
            generation = await _bump(conn)
        self.produced.add(generation)

    @classmethod
    async def open(cls, url: str, *, create: bool = False) -> Catalog:
        """Connect to `url`; with `create`, make missing tables (standalone use without Alembic)."""
        if url.startswith("sqlite") and ":///" in url:
            path = url.split(":///", 1)[1]
            if path and path != ":memory:":
                await asyncio.to_thread(_make_parent, path)
        args = {"timeout": 30} if url.startswith("sqlite") else {}
        engine = create_async_engine(url, connect_args=args)
        if create:
            async with engine.begin() as conn:
                await conn.run_sync(CatalogBase.metadata.create_all)
        return cls(engine)

    async def close(self) -> None:
        await self.engine.dispose()

    async def known(self, source: str) -> dict[str, Known]:
        """uri -> what the catalog holds for every document of `source`."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    DocumentRow.uri,
                    DocumentRow.content_hash,
                    DocumentRow.chunk_ids,
                    DocumentRow.status,
                    DocumentRow.version,
                    DocumentRow.audience,
                ).where(DocumentRow.source == source)
            )
            return {
                r.uri: Known(
                    r.uri, r.content_hash, tuple(r.chunk_ids), r.status, r.version, _own(r.audience)
                )
                for r in rows
            }

    async def live(self) -> list[LiveDocument]:
        """Every document's live chunks (failed documents keep their last good ones)."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(DocumentRow.collection, DocumentRow.chunk_ids, DocumentRow.tokens)
            )
            return [LiveDocument(r.collection, list(r.chunk_ids), list(r.tokens)) for r in rows]

    async def chunk_map(self) -> list[LiveEntry]:
        """Every document's chunk ids, collection and audience: what should be live."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    DocumentRow.id,
                    DocumentRow.source,
                    DocumentRow.collection,
                    DocumentRow.audience,
                    DocumentRow.chunk_ids,
                )
            )
            found = []
            for r in rows:
                own = _own(r.audience)
                found.append(
                    LiveEntry(r.id, r.collection, key_of(r.source, own), own, list(r.chunk_ids))
                )
            return found

    async def tokens(self, documents: Iterable[int]) -> dict[int, tuple[list[str], list[str]]]:
        """document id -> (chunk ids, their lexical tokens) for the given documents."""
        wanted = sorted(set(documents))
        found: dict[int, tuple[list[str], list[str]]] = {}
        async with self.engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                rows = await conn.execute(
                    select(DocumentRow.id, DocumentRow.chunk_ids, DocumentRow.tokens).where(
                        DocumentRow.id.in_(wanted[start : start + 500])
                    )
                )
                found.update((r.id, (list(r.chunk_ids), list(r.tokens))) for r in rows)
        return found

    async def commit(
        self, source: str, indexed: Sequence[Indexed], removed: Iterable[str] = ()
    ) -> None:
        """Make new versions current and forget removed documents, in one transaction."""
        now = utcnow()
        async with self._changing() as conn:
            for doc in indexed:
                values: dict[str, Any] = {
                    "collection": doc.collection,
                    "title": doc.title,
                    "content_hash": doc.content_hash,
                    "version": doc.version,
                    "chunk_ids": list(doc.chunk_ids),
                    "tokens": list(doc.tokens),
                    "status": "ok",
                    "error": "",
                    "modified_at": doc.modified_at,
                    "audience": None if doc.audience is None else audiences.dump(doc.audience),
                    "last_seen_at": now,
                    "last_indexed_at": now,
                }
                done = await conn.execute(
                    update(DocumentRow)
                    .where(DocumentRow.source == source, DocumentRow.uri == doc.uri)
                    .values(**values)
                )
                if not done.rowcount:
                    await conn.execute(
                        insert(DocumentRow).values(source=source, uri=doc.uri, **values)
                    )
            gone = list(removed)
            for start in range(0, len(gone), 500):
                await conn.execute(
                    delete(DocumentRow).where(
                        DocumentRow.source == source, DocumentRow.uri.in_(gone[start : start + 500])
                    )
                )
            await conn.execute(
                update(SourceRow)
                .where(SourceRow.name == source)
                .values(generation=SourceRow.generation + 1)
            )

    async def relabel(
        self, source: str, changes: dict[str, Audience | None]
    ) -> list[tuple[str, list[str], list[str]]]:
        """Give documents another audience of their own (None: their source's) without
        re-indexing them; (collection, chunk ids, tokens) of each, to swap in again."""
        found: list[tuple[str, list[str], list[str]]] = []
        async with self._changing() as conn:
            for uri, audience in changes.items():
                data = None if audience is None else audiences.dump(audience)
                await conn.execute(
                    update(DocumentRow)
                    .where(DocumentRow.source == source, DocumentRow.uri == uri)
                    .values(audience=data)
                )
                row = (
                    await conn.execute(
                        select(
                            DocumentRow.collection, DocumentRow.chunk_ids, DocumentRow.tokens
                        ).where(DocumentRow.source == source, DocumentRow.uri == uri)
                    )
                ).first()
                if row is not None:
                    found.append((row.collection, list(row.chunk_ids), list(row.tokens)))
        return found

    async def seen(
        self, source: str, uris: Sequence[str], versions: dict[str, str] | None = None
    ) -> None:
        """Record that unchanged documents are still there (and their listing's new version,
        when the content was read and found the same)."""
        now = utcnow()
        versions = versions or {}
        async with self.engine.begin() as conn:
            for start in range(0, len(uris), 500):
                await conn.execute(
                    update(DocumentRow)
                    .where(
                        DocumentRow.source == source, DocumentRow.uri.in_(uris[start : start + 500])
                    )
                    .values(last_seen_at=now, status="ok", error="")
                )
            for uri, version in versions.items():
                await conn.execute(
                    update(DocumentRow)
                    .where(DocumentRow.source == source, DocumentRow.uri == uri)
                    .values(version=version)
                )

    async def failed(self, source: str, collection: str, failures: dict[str, str]) -> None:
        """Record failed documents; their last good chunks stay as they are."""
        now = utcnow()
        async with self.engine.begin() as conn:
            for uri, error in failures.items():
                done = await conn.execute(
                    update(DocumentRow)
                    .where(DocumentRow.source == source, DocumentRow.uri == uri)
                    .values(status="failed", error=error[:2000], last_seen_at=now)
                )
                if not done.rowcount:
                    await conn.execute(
                        insert(DocumentRow).values(
                            source=source,
                            uri=uri,
                            collection=collection,
                            title="",
                            content_hash="",
                            chunk_ids=[],
                            tokens=[],
                            status="failed",
                            error=error[:2000],
                            last_seen_at=now,
                        )
                    )

    async def acquire(
        self,
        source: str,
        kind: str | None = None,
        collection: str | None = None,
        *,
        run: bool = True,
    ) -> datetime | None:
        """Take the source's lease for a run (or, without `run`, for a change that is not a run:
        the last start stays); None when another change holds it."""
        now = utcnow()
        async with self.engine.begin() as conn:
            # replicas starting together register the same source: the first insert wins
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            await conn.execute(
                dialect.insert(SourceRow)
                .values(
                    name=source,
                    kind=kind or "directory",
                    collection=collection or "default",
                    last_result="never",
                    generation=0,
                )
                .on_conflict_do_nothing(index_elements=["name"])
            )
            values: dict[str, Any] = {"running_since": now}
            if run:
                values["last_started_at"] = now
            if kind:
                values["kind"] = kind
            if collection:
                values["collection"] = collection
            taken = await conn.execute(
                update(SourceRow)
                .where(
                    SourceRow.name == source,
                    or_(SourceRow.running_since.is_(None), SourceRow.running_since < now - LEASE),
                )
                .values(**values)
            )
            return now if taken.rowcount else None

    async def release(self, source: str, started: datetime, report: RefreshReport) -> None:
        """Write the run's report and free the lease."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(
                insert(RunRow).values(
                    source=source,
                    started_at=started,
                    finished_at=now,
                    result=report.result,
                    added=report.added,
                    changed=report.changed,
                    removed=report.removed,
                    unchanged=report.unchanged,
                    failed=len(report.failed),
                    chunks=report.chunks,
                    embedded=report.embedded,
                    seconds=report.seconds,
                    error=report.error[:2000],
                    failures={k: v[:500] for k, v in list(report.failed.items())[:200]},
                )
            )
            await conn.execute(
                update(SourceRow)
                .where(SourceRow.name == source)
                .values(running_since=None, last_finished_at=now, last_result=report.result)
            )

    async def last_started(self, source: str) -> datetime | None:
        async with self.engine.connect() as conn:
            value: datetime | None = await conn.scalar(
                select(SourceRow.last_started_at).where(SourceRow.name == source)
            )
            return value

    async def generation(self) -> int:
        """Grows with every committed change to any source (to notice other processes' runs)."""
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(func.max(StateRow.generation)))
            return int(value or 0)

    async def register(
        self, name: str, kind: str, collection: str, origin: str, spec: dict[str, Any] | None = None
    ) -> None:
        """Record a source and where it came from (and, when added at run time, its settings)."""
        async with self._changing() as conn:
            dialect = sqlite if conn.dialect.name == "sqlite" else postgresql
            values = {"kind": kind, "collection": collection, "origin": origin, "spec": spec}
            await conn.execute(
                dialect.insert(SourceRow)
                .values(name=name, last_result="never", generation=0, **values)
                .on_conflict_do_update(index_elements=["name"], set_=values)
            )

    async def registered(self) -> list[Registered]:
        """Every source the catalog knows, with its origin and run-time settings."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(select(SourceRow.name, SourceRow.origin, SourceRow.spec))
            return [Registered(r.name, r.origin or "config", r.spec) for r in rows]

    async def documents(self, source: str) -> list[DocumentInfo]:
        """The documents of one source, by uri."""
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(
                    DocumentRow.uri,
                    DocumentRow.title,
                    DocumentRow.chunk_ids,
                    DocumentRow.status,
                    DocumentRow.error,
                    DocumentRow.last_indexed_at,
                    DocumentRow.audience,
                )
                .where(DocumentRow.source == source)
                .order_by(DocumentRow.uri)
            )
            return [
                DocumentInfo(
                    r.uri,
                    r.title,
                    len(r.chunk_ids),
                    r.status,
                    r.error,
                    r.last_indexed_at,
                    _own(r.audience),
                )
                for r in rows
            ]

    async def last_errors(self) -> dict[str, str]:
        """source -> the error of its latest run ("" when that run had none)."""
        async with self.engine.connect() as conn:
            latest = (
                select(RunRow.source, func.max(RunRow.id).label("id"))
                .group_by(RunRow.source)
                .subquery()
            )
            rows = await conn.execute(
                select(RunRow.source, RunRow.error, RunRow.failures).join(
                    latest, RunRow.id == latest.c.id
                )
            )
            found: dict[str, str] = {}
            for source, error, failures in rows:
                detail = error or "; ".join(f"{k}: {v}" for k, v in list(failures.items())[:3])
                found[source] = detail
            return found

    async def unlock(self, source: str) -> None:
        """Free the source's lease without recording a run."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(SourceRow).where(SourceRow.name == source).values(running_since=None)
            )

    async def drop(self, source: str) -> tuple[int, list[str]]:
        """Forget a source, its documents and its row; returns (documents, chunk ids)."""
        async with self._changing() as conn:
            rows = list(
                await conn.execute(
                    select(DocumentRow.chunk_ids).where(DocumentRow.source == source)
                )
            )
            ids = [i for (chunk_ids,) in rows for i in chunk_ids]
            await conn.execute(delete(DocumentRow).where(DocumentRow.source == source))
            await conn.execute(delete(SourceRow).where(SourceRow.name == source))
            return len(rows), ids

    async def statuses(self) -> dict[str, SourceStatus]:
        """Every source the catalog knows, with its document and chunk counts."""
        async with self.engine.connect() as conn:
            sources = list(await conn.execute(select(SourceRow.__table__)))
            counts: dict[str, tuple[int, int, int]] = {}
            rows = await conn.execute(
                select(DocumentRow.source, DocumentRow.chunk_ids, DocumentRow.status)
            )
            for source, chunk_ids, status in rows:
                docs, chunks, failed = counts.get(source, (0, 0, 0))
                counts[source] = (
                    docs + (1 if chunk_ids else 0),
                    chunks + len(chunk_ids),
                    failed + (status == "failed"),
                )
        found: dict[str, SourceStatus] = {}
        for row in sources:
            docs, chunks, failed = counts.get(row.name, (0, 0, 0))
            result = "running" if row.running_since is not None else row.last_result
            found[row.name] = SourceStatus(
                row.name,
                row.kind,
                row.collection,
                docs,
                chunks,
                failed,
                row.last_started_at,
                result,
                origin=row.origin or "config",
            )
        return found

    async def forget(self, source: str) -> list[str]:
        """Drop a source from the catalog; returns its chunk ids (to delete from the store)."""
        async with self._changing() as conn:
            rows = await conn.execute(
                select(DocumentRow.chunk_ids).where(DocumentRow.source == source)
            )
            ids = [i for (chunk_ids,) in rows for i in chunk_ids]
            await conn.execute(delete(DocumentRow).where(DocumentRow.source == source))
            await conn.execute(
                update(SourceRow)
                .where(SourceRow.name == source)
                .values(generation=SourceRow.generation + 1)
            )
            return ids
