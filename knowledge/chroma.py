"""chromadb, imported without two costs that teambot's use of it never needs back.

Importing chromadb costs a cold `teambot ask` about a quarter of its CPU. Two parts of that
do nothing for us:

- the OpenTelemetry span exporter over gRPC (grpc and protobuf, ~0.05 s), which chromadb only
  builds when CHROMA_OTEL_COLLECTION_ENDPOINT is set: it is stood in for by a class that
  imports the real exporter the moment one is built, so tracing still works when configured;
- the `overrides` package checking, as each class is defined, that every `@override` method's
  signature matches its base's (~0.05 s): a check for chromadb's own developers, turned off for
  classes defined from then on (the decorator still marks the methods, as `EnforceOverrides`
  expects).

Both only while chromadb is not imported yet, and before it is; `load()` returns the module.
"""

from __future__ import annotations

import functools
import importlib
import sys
from types import ModuleType
from typing import Any

EXPORTER = "opentelemetry.exporter.otlp.proto.grpc.trace_exporter"


class _Exporter:
    """Stands for OTLPSpanExporter until one is built; then the real module is imported."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if getattr(sys.modules.get(EXPORTER), "OTLPSpanExporter", None) is _Exporter:
            del sys.modules[EXPORTER]
        return importlib.import_module(EXPORTER).OTLPSpanExporter(*args, **kwargs)


def load() -> ModuleType:
    """`import chromadb`, the first time without the two costs above."""
    if "chromadb" not in sys.modules:
        _defer_exporter()
        _skip_signature_checks()
    import chromadb

    return chromadb


def _defer_exporter() -> None:
    if EXPORTER in sys.modules:
        return
    stand_in = ModuleType(EXPORTER, "teambot: the real module loads when an exporter is built")
    stand_in.OTLPSpanExporter = _Exporter  # type: ignore[attr-defined]
    sys.modules[EXPORTER] = stand_in


def _skip_signature_checks() -> None:
    import overrides

    for name in ("override", "overrides"):
        decorator = getattr(overrides, name)
        if not isinstance(decorator, functools.partial):
            setattr(overrides, name, functools.partial(decorator, check_signature=False))
