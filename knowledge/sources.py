"""Read a configured source: yield its documents (or per-document errors) one by one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

from knowledge.config import SourceSettings
from knowledge.loaders import KINDS, LoadError, document_uri, list_files
from knowledge.parsing import parse_bytes
from knowledge.types import Document
from knowledge.web import SourceError, read_sitemap, read_url

__all__ = ["SourceError", "read_source"]


Total = Callable[[int], None]


def _ignore(_: int) -> None:
    return None


def read_source(
    source: SourceSettings, on_total: Total = _ignore
) -> AsyncIterator[tuple[str, Document | str]]:
    """(uri, document) per readable document and (uri, error) per unreadable one.

    `on_total` hears how many documents to expect once that is known. Raises `SourceError`
    when the source itself cannot be read; a refresh then removes nothing.
    """
    if source.kind == "directory":
        return _read_directory(source, on_total)
    if source.kind == "url":
        on_total(1)
        return read_url(source)
    return read_sitemap(source, on_total)


async def _read_directory(
    source: SourceSettings, on_total: Total
) -> AsyncIterator[tuple[str, Document | str]]:
    root = await asyncio.to_thread(lambda: Path(source.location).expanduser().resolve())
    if not await asyncio.to_thread(root.exists):
        raise SourceError(f"knowledge source {source.name!r}: {root} does not exist")
    files = await asyncio.to_thread(list_files, root, source.include, source.exclude)
    on_total(len(files))
    for path in files:
        uri = document_uri(path, root)
        try:
            yield uri, await _load(path, uri)
        except LoadError as exc:
            yield uri, str(exc)


async def _load(path: Path, uri: str) -> Document:
    """One file, parsed in the sandbox (`knowledge.parsing`)."""
    try:
        data = await asyncio.to_thread(path.read_bytes)
        mtime = await asyncio.to_thread(lambda: path.stat().st_mtime)
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc
    suffix = path.suffix.lower()
    return await parse_bytes(
        data,
        KINDS[suffix],
        uri=uri,
        name=path.stem,
        suffix=suffix,
        modified_at=datetime.fromtimestamp(mtime, tz=UTC),
    )
