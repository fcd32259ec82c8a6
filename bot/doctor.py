"""`teambot doctor`'s checks: the database, the knowledge base and its embedding model, each
enabled platform (through its adapter's own checks) and the model server, as rows of
(check, status, detail). The CLI prints them; any "error" row fails the command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.app import App
from bot.runtime import Runtime
from knowledge.files import probe

if TYPE_CHECKING:
    from engine.llm import LLMClient

Row = tuple[
    str, str, str
]  # (check, status, detail); status: ok | empty | disabled | warning | error


async def diagnose(runtime: Runtime, app: App) -> list[Row]:
    """Every check but the configuration's, on an opened runtime."""
    settings = runtime.settings
    rows: list[Row] = [("database", "ok", redact_url(settings.storage.url))]
    chunks = await app.knowledge.store.count()
    detail = f"{chunks} chunks in collection {settings.knowledge.collection!r}"
    rows.append(("knowledge", "ok" if chunks else "empty", detail))
    rows += [("embeddings", status, detail) for status, detail in await embedding_checks(app)]
    rows.append(("files", *await probe(app.knowledge.files)))
    for adapter in runtime.adapters:
        for check in await adapter.check():
            rows.append((f"{adapter.name}: {check.name}", check.status, check.detail))
    if app.llm is None:
        return [
            *rows,
            ("model server", "disabled", "retrieval-only answers ([llm] enabled = false)"),
        ]
    return rows + await model_checks(app.llm)


async def embedding_checks(app: App) -> list[tuple[str, str]]:
    """The embedding model's rows: a model change waiting for its re-embed, a knowledge base
    mostly in a language the model does not read."""
    kb = app.knowledge
    rows = []
    if kb.pending is not None:
        rows.append(
            (
                "warning",
                f"model changed to {kb.pending.embedder.model_name}: {kb.embedder.model_name} "
                "serves until `teambot serve` has re-embedded every chunk",
            )
        )
    warning = await kb.language_warning()
    rows.append(("warning", warning) if warning else ("ok", kb.embedder.model_name))
    return rows


async def model_checks(llm: LLMClient) -> list[Row]:
    """The model server: reachable, serving the configured model, how it separates thinking,
    its context and how many answers run at once."""
    report = await llm.probe()
    if not report.reachable:
        detail = (
            f"unreachable: {report.base_url}: {report.error}{v1_hint(report.base_url, report.error)}"
            " — answers are retrieval-only until it is up (or set [llm] enabled = false)"
        )
        return [("model server", "error", detail)]
    rows: list[Row] = []
    if not report.model_served:
        listed = ", ".join(report.models) or "nothing"
        detail = (
            f"{report.model!r} is not served at {report.base_url} (it lists: {listed}); "
            'set [llm] model to one of them, or "" for the first'
        )
        rows.append(("model", "error", detail))
    separated = {
        True: "reasoning separated (reasoning_content)",
        False: "reasoning inline: <think> is stripped by teambot",
        None: "reasoning separation unknown",
    }[report.reasoning_separated]
    timing = f"{report.latency:.2f} s" if report.latency is not None else report.error
    status = "ok" if report.health_ok and report.model_served else "degraded"
    rows.append(
        (
            "model server",
            status,
            f"{report.base_url} · model {report.model} · {separated} · {timing}",
        )
    )
    context = f"{report.context} tokens" if report.context else "not reported"
    limits = (
        f"{report.kind}: context {context} · {llm.concurrency} at once · "
        f"thinking: {report.reasoning}"
    )
    rows.append(("model limits", "ok" if report.context else "warning", limits))
    return rows


def v1_hint(base_url: str, error: str) -> str:
    """A 404 from a base URL without /v1 is almost always the missing /v1."""
    if "404" not in error or base_url.rstrip("/").endswith("/v1"):
        return ""
    return f" — the OpenAI-compatible API is usually under /v1: try {base_url.rstrip('/')}/v1"


def redact_url(url: str) -> str:
    """A database URL without its password."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else f"{scheme}://{user}@{host}"
