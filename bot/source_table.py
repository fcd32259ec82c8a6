"""What `teambot sources` shows, read from the catalog tables alone.

Listing sources must stay instant: no embedding model, no vector store, no migrations. The
catalog is read through SQLAlchemy; a database that was never migrated (or a SQLite file that
does not exist yet) simply has no runs to show.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from knowledge import SAMPLE_SOURCE, KnowledgeBase
from knowledge.catalog import Catalog
from knowledge.config import KnowledgeSettings, SourceSettings
from knowledge.types import SourceStatus


def configured_sources(settings: KnowledgeSettings) -> list[SourceSettings]:
    """The sources in the settings; with none, the bundled sample (as `KnowledgeBase.sources`)."""
    if settings.sources or not settings.seed_sample:
        return list(settings.sources)
    return [
        SourceSettings(
            name=SAMPLE_SOURCE,
            kind="directory",
            location=str(KnowledgeBase.sample_path()),
            collection=settings.default_collection,
        )
    ]


async def source_statuses(settings: KnowledgeSettings, database_url: str) -> list[SourceStatus]:
    """Configured sources first (never-run ones too), then sources only the catalog knows."""
    known = await _catalog_statuses(database_url)
    rows = []
    for source in configured_sources(settings):
        found = known.pop(source.name, None)
        rows.append(
            found
            or SourceStatus(source.name, source.kind, source.collection, 0, 0, 0, None, "never")
        )
    rows.extend(
        SourceStatus(
            s.name,
            s.kind,
            s.collection,
            s.documents,
            s.chunks,
            s.failed,
            s.last_run,
            s.result,
            False,
        )
        for s in known.values()
    )
    return rows


async def _catalog_statuses(database_url: str) -> dict[str, SourceStatus]:
    if _missing_sqlite_file(database_url):
        return {}
    catalog = await Catalog.open(database_url)
    try:
        return await catalog.statuses()
    except SQLAlchemyError as error:
        if _no_such_table(error):
            return {}  # never migrated: nothing ran yet
        raise
    finally:
        await catalog.close()


def _missing_sqlite_file(database_url: str) -> bool:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return False
    return not Path(url.database).expanduser().exists()


def _no_such_table(error: SQLAlchemyError) -> bool:
    text = str(error).lower()
    return "no such table" in text or ("relation" in text and "does not exist" in text)
