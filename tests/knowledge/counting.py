"""A source kind wrapped so a test sees which documents its reader read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from knowledge.config import SourceSettings
from knowledge.sources import DocumentRef, SourceKind, SourceKinds, SourceReader, builtin_kinds
from knowledge.types import Document


class Counting:
    """A reader that records the uri of every document it reads."""

    def __init__(self, reader: SourceReader, reads: list[str]) -> None:
        self._reader, self.reads = reader, reads

    def documents(self) -> AsyncIterator[DocumentRef]:
        return self._reader.documents()

    async def read(self, ref: DocumentRef) -> Document:
        self.reads.append(ref.uri)
        return await self._reader.read(ref)

    async def aclose(self) -> None:
        await self._reader.aclose()


def counting_kinds(name: str, reads: list[str], data_dir: Path) -> SourceKinds:
    """The built-in kinds, with kind `name` recording its reads in `reads`."""
    kinds = builtin_kinds(data_dir)
    kind = kinds.get(name)

    def build(source: SourceSettings, options: Any) -> Counting:
        return Counting(kind.build(source, options), reads)

    registry = SourceKinds(k for k in kinds if k.name != name)
    registry.register(
        SourceKind(
            name=name,
            label=kind.label,
            location_help=kind.location_help,
            build=build,
            options=kind.options,
            parse_location=kind.parse_location,
        )
    )
    return registry
