"""Retrieval evaluation: how often the expected source comes back, per mode and per language.

Operators write a sheet (CSV or XLSX) of questions with the source that answers each (a file
path, a URL or a section heading; alternatives separated by "|"), optionally words the answer
must contain and the previous question of a follow-up. A question with no expected source is a
question the knowledge base cannot answer: it measures the grounding floor (`min_score`).

`evaluate` runs every question through the retriever in each mode (dense, lexical, hybrid) and
reports hit@1, hit@5 and MRR@5 at document level, the misses with what came back instead, and
the floor's precision and recall per language. `teambot eval` prints and saves the report; the
last one is kept as JSON under the data folder for the console.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from knowledge.families import language_of
from knowledge.types import Passage

MODES = ("dense", "lexical", "hybrid")
DEPTH = 5  # hit@5, MRR@5
_HEADERS = {
    "question": ("question", "问题", "query", "q"),
    "expected": ("expected", "expected source", "source", "来源", "预期来源", "answer source"),
    "words": ("answer words", "expected answer", "answer", "words", "答案", "答案关键词"),
    "previous": ("previous", "previous question", "follow-up of", "上一个问题", "上文"),
}


class EvalFileError(ValueError):
    """The evaluation sheet cannot be read; the message says what to fix."""


class Retrieves(Protocol):
    """What evaluation needs of `knowledge.Retriever`."""

    @property
    def min_score(self) -> float: ...

    async def retrieve(
        self,
        query: str,
        *,
        k: int | None = None,
        collections: Sequence[str] | None = None,
        mode: str | None = None,
    ) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class EvalCase:
    """One question of the sheet; `expected` empty = the knowledge base has no answer."""

    question: str
    expected: tuple[str, ...] = ()
    words: tuple[str, ...] = ()
    previous: str = ""

    @property
    def language(self) -> str:
        return language_of(self.question)


@dataclass(slots=True)
class Miss:
    question: str
    expected: str
    got: list[str]


@dataclass(slots=True)
class Scores:
    """One mode's figures over a group of questions."""

    questions: int = 0
    hit1: float = 0.0
    hit5: float = 0.0
    mrr: float = 0.0
    words: float | None = None  # share whose answer words are all in the top 5 (when given)


@dataclass(slots=True)
class Floor:
    """The grounding floor on one language: answerable questions above it are recall,
    grounded questions that are answerable are precision."""

    min_score: float
    answerable: int
    unanswerable: int
    precision: float
    recall: float


@dataclass(slots=True)
class EvalReport:
    created: str
    source: str
    collections: list[str]
    modes: dict[str, dict[str, Scores]] = field(default_factory=dict)  # mode -> group -> scores
    floors: dict[str, Floor] = field(default_factory=dict)  # language -> floor figures
    misses: dict[str, list[Miss]] = field(default_factory=dict)  # mode -> misses

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=2)

    def table(self) -> str:
        """The figures as a Markdown table, then the misses of the default mode."""
        lines = [
            f"retrieval evaluation of {self.source} ({self.created})",
            "",
            "| mode | questions | n | hit@1 | hit@5 | MRR@5 | answer words in top 5 |",
            "| --- | --- | --- | --- | --- | --- | --- |",
        ]
        for mode, groups in self.modes.items():
            for group, s in groups.items():
                words = "-" if s.words is None else f"{s.words:.3f}"
                lines.append(
                    f"| {mode} | {group} | {s.questions} | {s.hit1:.3f} | {s.hit5:.3f} | "
                    f"{s.mrr:.3f} | {words} |"
                )
        if self.floors:
            lines += ["", "| language | min_score | answerable | no answer | precision | recall |"]
            lines.append("| --- | --- | --- | --- | --- | --- |")
            for language, f in self.floors.items():
                lines.append(
                    f"| {language} | {f.min_score:.2f} | {f.answerable} | {f.unanswerable} | "
                    f"{f.precision:.3f} | {f.recall:.3f} |"
                )
        for mode, misses in self.misses.items():
            if misses:
                lines += ["", f"misses ({mode}): question → expected; came back instead"]
                lines += [
                    f"- {m.question} → {m.expected}; got {', '.join(m.got) or 'nothing'}"
                    for m in misses
                ]
        return "\n".join(lines)


def load_cases(path: Path) -> list[EvalCase]:
    """Questions from a CSV (UTF-8, comma or tab) or XLSX sheet with a header row."""
    if not path.is_file():
        raise EvalFileError(f"{path} does not exist: give a .csv or .xlsx file of questions")
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        rows = _xlsx_rows(path)
    elif suffix in (".csv", ".tsv", ".txt"):
        rows = _csv_rows(path)
    else:
        raise EvalFileError(f"{path}: use a .csv or .xlsx file (got {suffix or 'no suffix'})")
    if not rows:
        raise EvalFileError(f"{path} is empty: the first row names the columns")
    columns = _columns(path, rows[0])
    cases = []
    for row in rows[1:]:
        cell = {name: (row[i].strip() if i < len(row) and row[i] else "") for name, i in columns}
        if cell.get("question"):
            cases.append(
                EvalCase(
                    cell["question"],
                    _split(cell.get("expected", ""), "|"),
                    _split(cell.get("words", ""), "|;,；，"),
                    cell.get("previous", ""),
                )
            )
    if not cases:
        raise EvalFileError(f"{path} has a header but no questions")
    return cases


def write_cases(path: Path, cases: Iterable[EvalCase]) -> None:
    """Write a CSV that `load_cases` reads back (used to build example sheets)."""
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["question", "expected", "answer words", "previous"])
        for case in cases:
            writer.writerow(
                [case.question, "|".join(case.expected), "|".join(case.words), case.previous]
            )


def matches(passage: Passage, expected: str) -> bool:
    """Whether a passage is the expected source: its path or URL (whole, or its end after a
    "/"), its file name, its title or one of its section headings."""
    want = expected.strip().lower().rstrip("/")
    if not want:
        return False
    location = passage.location.lower().rstrip("/")
    if location == want or location.endswith("/" + want.lstrip("/")):
        return True
    headings = [h.strip().lower() for h in passage.section.split(">")]
    return want == passage.title.strip().lower() or want in headings


async def evaluate(
    retriever: Retrieves,
    cases: Sequence[EvalCase],
    *,
    source: str,
    collections: Sequence[str] | None = None,
    modes: Sequence[str] = MODES,
) -> EvalReport:
    """Run every case in every mode; see the module docstring."""
    report = EvalReport(
        datetime.now(UTC).isoformat(timespec="seconds"), source, list(collections or [])
    )
    for mode in modes:
        results = [await _run(retriever, case, mode, collections) for case in cases]
        answerable = [(c, r) for c, r in zip(cases, results, strict=True) if c.expected]
        groups: dict[str, list[tuple[EvalCase, _Result]]] = {"all": answerable}
        for case, result in answerable:
            groups.setdefault(case.language, []).append((case, result))
            if case.previous:
                groups.setdefault("follow-up", []).append((case, result))
        report.modes[mode] = {name: _scores(rows) for name, rows in groups.items() if rows}
        report.misses[mode] = [
            Miss(c.question, " | ".join(c.expected), r.got) for c, r in answerable if r.rank != 1
        ]
        if mode == "hybrid" or (mode == modes[-1] and not report.floors):
            report.floors = _floors(retriever.min_score, cases, results)
    return report


def save(report: EvalReport, path: Path) -> tuple[Path, Path]:
    """Write the report as JSON at `path` and as a readable table beside it (.md)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(report.to_json(), "utf-8")
    table = path.with_suffix(".md")
    table.write_text(report.table() + "\n", "utf-8")
    return path, table


def last_report_path(persist_dir: Path) -> Path:
    """Where the last `teambot eval` report is kept: the data folder holding the chroma one."""
    return Path(persist_dir).expanduser().parent / "eval" / "last-report.json"


def load_last(persist_dir: Path) -> dict[str, Any] | None:
    """The last saved report as plain JSON data (for the console), or None."""
    path = last_report_path(persist_dir)
    try:
        data: dict[str, Any] = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return data


@dataclass(slots=True)
class _Result:
    rank: int | None  # 1-based rank of the first expected passage within DEPTH
    top: float  # best score
    got: list[str]  # what came back (locations, first DEPTH)
    words: bool | None  # answer words all present in the top DEPTH (None when not given)


async def _run(
    retriever: Retrieves, case: EvalCase, mode: str, collections: Sequence[str] | None
) -> _Result:
    # As the conversation does: a follow-up alone first, with the question before it when the
    # follow-up alone finds no grounding.
    passages = await retriever.retrieve(case.question, k=DEPTH, collections=collections, mode=mode)
    if case.previous and (not passages or passages[0].score < retriever.min_score):
        combined = f"{case.previous}\n{case.question}"
        passages = await retriever.retrieve(combined, k=DEPTH, collections=collections, mode=mode)
    rank = next(
        (
            n
            for n, p in enumerate(passages, start=1)
            if any(matches(p, want) for want in case.expected)
        ),
        None,
    )
    got = list(dict.fromkeys(_label(p) for p in passages))
    words = None
    if case.words:
        text = "\n".join(p.text for p in passages).lower()
        words = all(w.lower() in text for w in case.words)
    return _Result(rank, passages[0].score if passages else 0.0, got, words)


def _label(passage: Passage) -> str:
    return f"{passage.location} > {passage.section}" if passage.section else passage.location


def _scores(rows: Sequence[tuple[EvalCase, _Result]]) -> Scores:
    n = len(rows)
    ranks = [r.rank for _, r in rows]
    worded = [r.words for _, r in rows if r.words is not None]
    return Scores(
        n,
        sum(1 for r in ranks if r == 1) / n,
        sum(1 for r in ranks if r is not None) / n,
        sum(1 / r for r in ranks if r is not None) / n,
        sum(worded) / len(worded) if worded else None,
    )


def _floors(
    floor: float, cases: Sequence[EvalCase], results: Sequence[_Result]
) -> dict[str, Floor]:
    found: dict[str, Floor] = {}
    for language in sorted({c.language for c in cases}):
        rows = [(c, r) for c, r in zip(cases, results, strict=True) if c.language == language]
        yes = [r for c, r in rows if c.expected]
        no = [r for c, r in rows if not c.expected]
        if not no:
            continue
        true_pos = sum(1 for r in yes if r.top >= floor)
        grounded = true_pos + sum(1 for r in no if r.top >= floor)
        found[language] = Floor(
            floor,
            len(yes),
            len(no),
            true_pos / grounded if grounded else 1.0,
            true_pos / len(yes) if yes else 1.0,
        )
    return found


def floor_curve(
    cases: Sequence[EvalCase], tops: Sequence[float], floors: Iterable[float]
) -> dict[str, list[tuple[float, float, float]]]:
    """(floor, precision, recall) per language for candidate floors, from best scores."""
    results = [_Result(None, t, [], None) for t in tops]
    curve: dict[str, list[tuple[float, float, float]]] = {}
    for floor in floors:
        for language, f in _floors(floor, cases, results).items():
            curve.setdefault(language, []).append((floor, f.precision, f.recall))
    return curve


def _split(value: str, separators: str) -> tuple[str, ...]:
    parts = re.split(f"[{re.escape(separators)}]", value) if value else []
    return tuple(p.strip() for p in parts if p.strip())


def _columns(path: Path, header: Sequence[str]) -> list[tuple[str, int]]:
    names = [str(h or "").strip().lower() for h in header]
    columns = {
        key: names.index(alias)
        for key, aliases in _HEADERS.items()
        for alias in reversed(aliases)  # the first alias present wins: it is written last
        if alias in names
    }
    if "question" not in columns:
        raise EvalFileError(
            f"{path}: no 'question' column (found {', '.join(names) or 'none'}); the first row "
            "must name the columns: question, expected, answer words, previous"
        )
    return list(columns.items())


def _csv_rows(path: Path) -> list[list[str]]:
    text = path.read_text("utf-8-sig")
    dialect = (
        "excel-tab" if path.suffix.lower() == ".tsv" or "\t" in text.split("\n", 1)[0] else "excel"
    )
    return [row for row in csv.reader(text.splitlines(), dialect=dialect) if any(row)]


def _xlsx_rows(path: Path) -> list[list[str]]:
    from openpyxl import load_workbook

    try:
        book = load_workbook(path, read_only=True, data_only=True)
    except Exception as exc:  # openpyxl raises several types for a bad file
        raise EvalFileError(f"{path} is not a readable .xlsx file: {exc}") from exc
    try:
        sheet = book.worksheets[0]
        return [
            ["" if v is None else str(v) for v in row]
            for row in sheet.iter_rows(values_only=True)
            if any(v is not None for v in row)
        ]
    finally:
        book.close()


async def load_cases_async(path: Path) -> list[EvalCase]:
    """`load_cases` off the event loop."""
    return await asyncio.to_thread(load_cases, path)
