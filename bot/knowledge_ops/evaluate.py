"""`teambot eval FILE`: retrieval quality on an operator's own questions (see knowledge.eval)."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy.exc import SQLAlchemyError

from bot.app import build_app
from bot.settings import Settings
from knowledge import EmbeddingModelError, KnowledgeBase
from knowledge.eval import (
    EvalFileError,
    EvalReport,
    evaluate,
    last_report_path,
    load_cases_async,
    save,
)

console = Console()
errors = Console(stderr=True)


async def run_eval(
    settings: Settings,
    file: Path,
    *,
    collections: list[str],
    chat: str | None,
    report: Path | None,
    misses: int,
) -> bool:
    """Evaluate, print, save the last report for the console (and at `report`); False when
    the sheet or the knowledge base cannot be read."""
    try:
        cases = await load_cases_async(file)
    except EvalFileError as error:
        errors.print(f"[red]cannot read the questions[/red]: {escape(str(error))}")
        return False
    try:
        app = await build_app(settings)  # migrated and seeded like every other command
    except (OSError, SQLAlchemyError, EmbeddingModelError) as error:
        errors.print(f"[red]cannot open the knowledge base[/red]: {escape(str(error))}")
        return False
    kb = app.knowledge
    try:
        scope = collections or (_chat_scope(kb, chat) if chat else [])
        with console.status(f"Asking {len(cases)} questions in 3 modes…"):
            result = await evaluate(
                kb.retriever, cases, source=str(file), collections=scope or None
            )
    finally:
        await app.close()
    _print(result, misses)
    paths = [save(result, last_report_path(settings.knowledge.persist_dir))[0]]
    if report is not None:
        paths.append(save(result, report)[0])
    console.print("saved " + ", ".join(escape(str(p)) for p in paths), highlight=False)
    return True


def _chat_scope(kb: KnowledgeBase, chat: str) -> list[str]:
    platform, _, chat_id = chat.rpartition(":")
    return list(kb.retriever.collections_for(platform, chat_id))


def _print(result: EvalReport, misses: int) -> None:
    table = Table(title=f"retrieval on {result.source}", title_justify="left")
    for column in ("mode", "questions", "n", "hit@1", "hit@5", "MRR@5", "answer words"):
        table.add_column(column, justify="left" if column in ("mode", "questions") else "right")
    for mode, groups in result.modes.items():
        for group, s in groups.items():
            words = "-" if s.words is None else f"{s.words:.3f}"
            table.add_row(
                mode,
                group,
                str(s.questions),
                f"{s.hit1:.3f}",
                f"{s.hit5:.3f}",
                f"{s.mrr:.3f}",
                words,
            )
    console.print(table)
    for language, floor in result.floors.items():
        console.print(
            f"grounding floor {floor.min_score:.2f} on {language}: precision "
            f"{floor.precision:.3f}, recall {floor.recall:.3f} ({floor.answerable} answerable, "
            f"{floor.unanswerable} without an answer)",
            highlight=False,
        )
    for mode in ("hybrid",):
        listed = result.misses.get(mode, [])
        if listed:
            console.print(f"\n{len(listed)} questions where {mode} missed the first place:")
        for miss in listed[:misses]:
            got = "; ".join(miss.got[:3]) or "nothing"
            console.print(
                f"  {escape(miss.question)}\n    expected {escape(miss.expected)}\n"
                f"    got {escape(got)}",
                highlight=False,
            )
