"""The `directory` kind: every supported file under a folder on this machine."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.loaders import document_uri, list_files
from knowledge.parsing import parse_file
from knowledge.sources.base import DocumentRef, NoOptions, SourceKind
from knowledge.types import Document

__all__ = ["DIRECTORY", "DirectoryReader"]


class DirectoryReader:
    """Lists files by include/exclude globs; a file's version is its size and mtime."""

    def __init__(self, source: SourceSettings) -> None:
        self._source = source
        self._root: Path | None = None

    async def documents(self) -> AsyncIterator[DocumentRef]:
        source = self._source
        root = await asyncio.to_thread(lambda: Path(source.location).expanduser().resolve())
        if not await asyncio.to_thread(root.exists):
            raise SourceError(f"knowledge source {source.name!r}: {root} does not exist")
        self._root = root
        for path, size, mtime in await asyncio.to_thread(_listing, root, source):
            yield DocumentRef(
                uri=document_uri(path, root),
                title=path.stem,
                version=f"{size}:{mtime}",
                modified_at=datetime.fromtimestamp(mtime / 1e9, UTC),
                meta={"path": str(path)},
            )

    async def read(self, ref: DocumentRef) -> Document:
        path = Path(ref.meta["path"])
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            raise LoadError(f"cannot read {path}: {exc.strerror or exc}") from exc
        return await parse_file(data, path, uri=ref.uri, modified_at=ref.modified_at)

    async def aclose(self) -> None:
        return None


def _listing(root: Path, source: SourceSettings) -> list[tuple[Path, int, int]]:
    found = []
    for path in list_files(root, source.include, source.exclude):
        try:
            stat = path.stat()
        except OSError:
            continue  # vanished between listing and stat: the next refresh sees it gone
        found.append((path, stat.st_size, stat.st_mtime_ns))
    return found


def _build(source: SourceSettings, _: object) -> DirectoryReader:
    return DirectoryReader(source)


DIRECTORY = SourceKind(
    name="directory",
    label="本机文件夹 / Folder",
    location_help="a folder on the server, e.g. /srv/handbook",
    build=_build,
    options=NoOptions,
)
