"""On demand: a reading-comprehension set in SQuAD's form, asked through the running server.

What a user of the web chat gets, measured from outside: every paragraph of the set becomes one
file of a `directory` source (its article's title as heading), `teambot refresh` builds
the index, `teambot serve` runs with the model off (retrieval-only answers quote and cite their
passages in rank order; `top_k = 5`), and each question is POSTed to /api/chat on a thread of its
own. MRR@5 is read from the cited sources of the final answer (the first five, in order):
the paragraph the question was written from is the right one. Beside it, on the same paragraphs:
plain BM25 (bm25s, lower-cased words, no stemming) and, with the server stopped, teambot's
dense, lexical and hybrid modes on the index the server used.

The public set: SQuAD (Rajpurkar et al., Wikipedia paragraphs, CC BY-SA 4.0), v1.1 or v2.0 dev
(2,067 / 1,204 paragraphs). teambot does not ship it and this machine has no internet: put the
file anywhere and name it,
    TEAMBOT_SQUAD_JSON=/data/dev-v1.1.json \\
        .venv/bin/python -m pytest tests/perf/test_public_reading.py -s -p no:cacheprovider
Without it the project's own reading set (tests/perf/eval_articles.txt, written for the project)
goes through the same path, so the harness itself is checked on every run. TEAMBOT_SQUAD_QUESTIONS
(default 300) answerable questions are drawn with a fixed seed; v2.0's unanswerable ones are
left out. Prints the figures. With the public set it asserts the issue's bar (MRR@5 >= 0.85
and >= plain BM25); without it, after checking the harness, it fails with NotImplementedError:
the public figure is still owed and a passing run must not hide that.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from knowledge import KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.eval import DEPTH, EvalCase, evaluate
from knowledge.types import Passage
from tests.perf import baseline
from tests.perf import eval_reading as reading
from tests.perf.serving import teambot_serve

QUESTIONS = int(os.environ.get("TEAMBOT_SQUAD_QUESTIONS", "300"))
SEED = 30
SOURCE = "reading"


@dataclass(frozen=True)
class Paragraph:
    file: str
    title: str
    text: str


@dataclass(frozen=True)
class Question:
    text: str
    file: str


def squad(path: Path) -> tuple[list[Paragraph], list[Question]]:
    """Every paragraph of a SQuAD-format file and its answerable questions."""
    data = json.loads(path.read_text("utf-8"))["data"]
    paragraphs, questions = [], []
    for a, article in enumerate(data):
        title = article["title"].replace("_", " ")
        for p, entry in enumerate(article["paragraphs"]):
            file = f"{a:03d}-{p:03d}.md"
            paragraphs.append(Paragraph(file, title, entry["context"]))
            questions += [
                Question(qa["question"].strip(), file)
                for qa in entry["qas"]
                if qa.get("answers") and not qa.get("is_impossible", False)
            ]
    return paragraphs, questions


def own_set() -> tuple[list[Paragraph], list[Question]]:
    """The project's reading set in the same shape (tests/perf/eval_reading.py)."""
    found = reading.paragraphs()
    paragraphs = [Paragraph(p.file, p.title, p.body) for p in found]
    questions = [Question(q, p.file) for p in found for q in p.questions]
    return paragraphs, questions


def _write(folder: Path, paragraphs: Sequence[Paragraph]) -> None:
    folder.mkdir(parents=True)
    for p in paragraphs:
        (folder / p.file).write_text(f"# {p.title}\n\n{p.text}\n", "utf-8")


def _env(corpus: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEAMBOT_")}
    source = {"name": SOURCE, "kind": "directory", "location": str(corpus)}
    env |= {
        "TEAMBOT_KNOWLEDGE__SOURCES": json.dumps([source]),
        "TEAMBOT_KNOWLEDGE__TOP_K": str(DEPTH),  # the answer cites five passages: MRR@5
        "TEAMBOT_LLM__ENABLED": "false",  # retrieval-only: the passages themselves, in order
        "TEAMBOT_POLICY__USER_PER_MINUTE": "10000",  # one asker, questions back to back
        "TEAMBOT_POLICY__USER_BURST": "1000",
    }
    return env


def _teambot(workdir: Path, env: dict[str, str], *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bot", *args], cwd=workdir, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, f"teambot {' '.join(args)}: {done.stdout[-2000:]}{done.stderr}"


@pytest.fixture
def served_url(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """`teambot serve` over the corpus in tmp_path/corpus (indexed first by the CLI)."""
    env = _env(tmp_path / "corpus")
    started = time.perf_counter()
    _teambot(tmp_path, env, "refresh", SOURCE)
    print(f"\nindexed by `teambot refresh` in {time.perf_counter() - started:.0f} s")
    with teambot_serve(tmp_path, env, within=600) as (url, _):
        yield url


def _cited(client: httpx.Client, url: str, text: str, n: int) -> list[str]:
    """The locations the web chat's final answer cites, in order."""
    body = {"chat_id": f"eval{n}", "thread_id": f"q{n}", "message_id": f"m{n}", "text": text}
    final = None
    with client.stream("POST", f"{url}/api/chat", json=body, timeout=120) as response:
        assert response.status_code == 200, response.read()
        for line in response.iter_lines():
            if line.startswith("data: "):
                event = json.loads(line[6:])
                final = event if event.get("type") == "final" else final
    assert final is not None, f"no final answer to {text!r}"
    answer = final["answer"]
    assert answer["outcome"] in ("retrieval_only", "no_knowledge"), answer
    return [c["location"] for c in answer["citations"]]


def reciprocal_rank(locations: Sequence[str], file: str) -> float:
    """1/position of the expected file among the first DEPTH cited passages (0: not there), as
    `knowledge.eval` and the BM25 baseline count."""
    for rank, location in enumerate(locations[:DEPTH], start=1):
        if re.search(rf"(^|/){re.escape(file)}$", location):
            return 1 / rank
    return 0.0


def _chosen() -> tuple[str, list[Paragraph], list[Question]]:
    named = os.environ.get("TEAMBOT_SQUAD_JSON")
    if named:
        label = f"public set {Path(named).name}"
        paragraphs, questions = squad(Path(named))
    else:
        label = "the project's reading set (TEAMBOT_SQUAD_JSON not set: no public set here)"
        paragraphs, questions = own_set()
    if len(questions) > QUESTIONS:
        questions = random.Random(SEED).sample(questions, QUESTIONS)
    return label, paragraphs, questions


@pytest.fixture
def chosen(tmp_path: Path) -> tuple[str, list[Paragraph], list[Question]]:
    label, paragraphs, questions = _chosen()
    _write(tmp_path / "corpus", paragraphs)
    return label, paragraphs, questions


def test_reading_set_through_the_web_chat(
    tmp_path: Path, chosen: tuple[str, list[Paragraph], list[Question]], served_url: str
) -> None:
    label, paragraphs, questions = chosen
    print(f"{label}: {len(paragraphs)} paragraphs, {len(questions)} questions")
    ranks, started = [], time.perf_counter()
    with httpx.Client() as client:
        for n, question in enumerate(questions):
            ranks.append(
                reciprocal_rank(_cited(client, served_url, question.text, n), question.file)
            )
    seconds = time.perf_counter() - started
    hit1 = sum(r == 1 for r in ranks) / len(ranks)
    hit5 = sum(r > 0 for r in ranks) / len(ranks)
    print(
        f"  web chat (hybrid, the default): hit@1 {hit1:.3f} hit@5 {hit5:.3f} "
        f"MRR@5 {sum(ranks) / len(ranks):.3f}  ({seconds / len(ranks) * 1000:.0f} ms a question)"
    )
    plain = _report_offline(tmp_path, paragraphs, questions)
    mrr = sum(ranks) / len(ranks)
    if not os.environ.get("TEAMBOT_SQUAD_JSON"):
        raise NotImplementedError(
            "the public English reading set (issue #30's done-when) is not measured: no copy of "
            "SQuAD reaches this machine; the figures above check the harness on the project's "
            "own reading set. Set TEAMBOT_SQUAD_JSON to dev-v1.1.json (or v2.0) to measure it."
        )
    assert mrr >= 0.85 and mrr >= plain, f"MRR@5 {mrr:.3f}, plain BM25 {plain:.3f}"


def _report_offline(
    tmp_path: Path, paragraphs: list[Paragraph], questions: list[Question]
) -> float:
    """Plain BM25 on the same paragraphs, and teambot's modes on the index the server used;
    returns plain BM25's MRR@5 (lower-cased words, no stop words, no stemming)."""
    import asyncio

    cases = [EvalCase(q.text, (q.file,)) for q in questions]
    passages = [Passage(p.text, p.title, SOURCE, p.file, "", 0.0, p.file) for p in paragraphs]
    plain = 0.0
    for stopwords, stem in ((False, False), (True, True)):
        mrr = baseline.bm25_mrr(passages, cases, stopwords=stopwords, stem=stem)
        print(f"  plain BM25 (bm25s, stopwords {stopwords}, stemmer {stem}): MRR@5 {mrr:.3f}")
        plain = plain or mrr  # the first: plain BM25 as issue #30 names it

    async def modes() -> None:
        settings = KnowledgeSettings(
            persist_dir=tmp_path / "data" / "chroma",
            sources=[
                SourceSettings(name=SOURCE, kind="directory", location=str(tmp_path / "corpus"))
            ],
        )
        database = f"sqlite+aiosqlite:///{tmp_path / 'data' / 'teambot.db'}"
        kb = await KnowledgeBase.open(settings, database_url=database)
        try:
            report = await evaluate(kb.retriever, cases, source="reading")
            for mode, by_language in report.modes.items():
                s = by_language["all"]
                print(
                    f"  {mode:<8} (teambot eval): hit@1 {s.hit1:.3f} hit@5 {s.hit5:.3f} MRR@5 {s.mrr:.3f}"
                )
        finally:
            await kb.close()

    asyncio.run(modes())
    return plain
