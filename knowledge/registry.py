"""Which knowledge sources exist: the config file's, and those added at run time (the catalog's).

Both live side by side; the catalog records each source's origin, and the settings of a source
added at run time (`teambot ingest`, `teambot sources add`, console uploads), so that every
process, and the scheduler, sees the same list. Nothing here loads a model or opens the vector
store: `teambot sources` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from knowledge.catalog import Catalog, Registered
from knowledge.config import KnowledgeSettings, SourceSettings
from knowledge.types import SourceStatus

SAMPLE_SOURCE = "sample"
UPLOADS_SOURCE = "uploads"

ORIGINS = {
    "config": "配置文件 / config file",
    "runtime": "运行时添加 / added at run time",
    "upload": "控制台上传 / console uploads",
    "sample": "示例手册 / bundled sample",
    "faq": "人工答案 / managed FAQ",
}
REAL_ORIGINS = frozenset({"config", "runtime", "upload"})  # their arrival retires the sample
UNSCHEDULED = frozenset({"upload", "faq"})  # nothing to re-read on a clock


def origin_of(entry: Registered, settings: KnowledgeSettings) -> str:
    """Where a catalog source came from (rows older than origins are named by convention)."""
    if entry.name == SAMPLE_SOURCE:
        return "sample"
    if any(s.name == entry.name for s in settings.sources):
        return "config"
    if entry.origin == "config" and entry.name == "handoff-faq":
        return "faq"
    return entry.origin


def all_sources(
    settings: KnowledgeSettings, registered: Sequence[Registered]
) -> list[SourceSettings]:
    """The config file's sources, then those added at run time (a config name wins)."""
    configured = {s.name for s in settings.sources}
    added = [
        SourceSettings.model_validate(r.spec)
        for r in sorted(registered, key=lambda r: r.name)
        if r.spec is not None and r.name not in configured
    ]
    return [*settings.sources, *added]


def has_real_sources(settings: KnowledgeSettings, registered: Sequence[Registered]) -> bool:
    """Whether anything but the sample (and the managed FAQ) is or will be indexed."""
    return bool(settings.sources) or any(origin_of(r, settings) in REAL_ORIGINS for r in registered)


async def overview(settings: KnowledgeSettings, catalog: Catalog) -> list[SourceStatus]:
    """Every source: configured and added ones first (never-run ones too), then orphans (in the
    catalog, in neither the config file nor the run-time list)."""
    registered = await catalog.registered()
    known = await catalog.statuses()
    errors = await catalog.last_errors()
    origins = {r.name: origin_of(r, settings) for r in registered}
    rows = []
    for source in all_sources(settings, registered):
        origin = origins.get(source.name, "config")
        found = known.pop(source.name, None) or SourceStatus(
            source.name, source.kind, source.collection, 0, 0, 0, None, "never"
        )
        rows.append(
            replace(
                found,
                configured=True,
                origin=origin,
                error=errors.get(source.name, ""),
                location=source.location,
                schedule="" if origin in UNSCHEDULED else source.schedule,
            )
        )
    rows.extend(
        replace(
            s, configured=False, origin=origins.get(s.name, s.origin), error=errors.get(s.name, "")
        )
        for s in known.values()
    )  # the managed FAQ is among these: fed by the console's approvals, not by a setting
    return rows


def orphaned(status: SourceStatus) -> bool:
    """In the catalog, but neither configured, added at run time, nor the managed FAQ."""
    return not status.configured and status.origin != "faq"
