"""The registry of knowledge source kinds: one record per kind, looked up by name.

The built-in kinds register in `knowledge.sources.builtin_kinds`; a package above (a chat
platform's document kinds) adds its own records when the runtime is composed. Adding a kind is
one module exporting a `SourceKind` and one line where the registry is built
(docs/extending.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pydantic import BaseModel, ValidationError

from knowledge.config import SourceSettings
from knowledge.errors import KnowledgeError
from knowledge.sources.base import SourceKind, SourceReader

__all__ = ["SourceKinds", "UnknownKindError"]


class UnknownKindError(KnowledgeError, ValueError):
    """A source names a kind nobody registered, or gives keys its kind does not take."""


class SourceKinds:
    """Kinds by name; builds readers for configured sources."""

    def __init__(self, kinds: Iterable[SourceKind] = ()) -> None:
        self._kinds: dict[str, SourceKind] = {}
        for kind in kinds:
            self.register(kind)

    def register(self, kind: SourceKind) -> None:
        if kind.name in self._kinds:
            raise ValueError(f"knowledge source kind {kind.name!r} is registered twice")
        self._kinds[kind.name] = kind

    def __iter__(self) -> Iterator[SourceKind]:
        return iter(self._kinds.values())

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    def names(self) -> list[str]:
        return list(self._kinds)

    def get(self, name: str) -> SourceKind:
        try:
            return self._kinds[name]
        except KeyError:
            raise UnknownKindError(
                f"unknown knowledge source kind {name!r}: use one of {', '.join(self._kinds)}"
            ) from None

    def options(self, source: SourceSettings) -> BaseModel:
        """The source's own keys checked against its kind's options model."""
        kind = self.get(source.kind)
        extra = dict(source.model_extra or {})
        try:
            return kind.options.model_validate(extra)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(options)'}: {e['msg']}"
                for e in exc.errors()
            )
            raise UnknownKindError(
                f"knowledge source {source.name!r} (kind {kind.name}): {problems}"
            ) from None

    def check(self, source: SourceSettings) -> None:
        """Raise `UnknownKindError` now for what `build` would refuse later."""
        self.options(source)

    def build(self, source: SourceSettings) -> SourceReader:
        """A reader for one configured source."""
        return self.get(source.kind).build(source, self.options(source))
