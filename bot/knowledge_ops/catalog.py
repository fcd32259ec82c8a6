"""Whether `teambot sources` has a catalog to read: listing sources creates nothing, so a SQLite
file that does not exist yet simply means nothing was indexed."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url


def missing_sqlite_file(database_url: str) -> bool:
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return False
    return not Path(url.database).expanduser().exists()
