"""The `stored` kind: files kept in teambot's shared file store (knowledge/files) under one key
prefix, the `location` — the console's uploads ("uploads"). Every replica lists and reads the
same files, so any of them can refresh the source or remove a file for everyone."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import PurePosixPath

from knowledge.config import SourceSettings
from knowledge.errors import LoadError, SourceError
from knowledge.files.base import FileStore, FileStoreError
from knowledge.loaders import KINDS
from knowledge.parsing import parse_file
from knowledge.sources.base import DocumentRef, NoOptions, SourceKind
from knowledge.types import Document

__all__ = ["STORED", "StoredReader", "stored_kind"]

STORED = "stored"
# the threads' attachments (engine/store/attachment_files.py): never indexed
PRIVATE = {"attachments"}


def prefix_of(source: SourceSettings) -> str:
    return source.location.strip().strip("/")


class StoredReader:
    """Lists the files under the source's prefix; a file's version is its digest. A document's
    uri is its key ("uploads/handbook.pdf"), as the `directory` kind named the same file."""

    def __init__(self, source: SourceSettings, files: FileStore) -> None:
        self._source, self._files = source, files

    async def documents(self) -> AsyncIterator[DocumentRef]:
        prefix = prefix_of(self._source) + "/"
        if prefix == "/" or prefix.split("/", 1)[0] in PRIVATE:
            raise SourceError(
                f"knowledge source {self._source.name!r}: {self._source.location!r} is not a "
                "folder of the file store that sources may read (attachments stay with their "
                "thread); use e.g. uploads"
            )
        try:
            listed = await self._files.list(prefix)
        except FileStoreError as error:
            raise SourceError(f"knowledge source {self._source.name!r}: {error}") from error
        for kept in listed:
            path = PurePosixPath(kept.key)
            if path.suffix.lower() not in KINDS or path.name.startswith("."):
                continue
            yield DocumentRef(
                uri=kept.key,
                title=path.stem,
                version=f"{kept.size}:{kept.digest}",
                modified_at=kept.modified_at,
            )

    async def read(self, ref: DocumentRef) -> Document:
        try:
            data = await self._files.get(ref.uri)
        except FileStoreError as error:
            raise LoadError(str(error)) from error
        if data is None:
            raise LoadError(f"{ref.uri} is no longer in the file store")
        return await parse_file(
            data, PurePosixPath(ref.uri), uri=ref.uri, modified_at=ref.modified_at
        )

    async def aclose(self) -> None:
        return None


def stored_kind(files: FileStore) -> SourceKind:
    """The kind, bound to this process's file store."""
    return SourceKind(
        name=STORED,
        label="共享文件存储 / Shared file store",
        location_help="a key prefix in teambot's file store, e.g. uploads",
        build=lambda source, _: StoredReader(source, files),
        options=NoOptions,
        scheduled=False,
    )
