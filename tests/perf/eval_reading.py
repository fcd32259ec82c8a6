"""The second English evaluation set: reading comprehension, questions that reuse the text's words.

`tests/perf/eval_set.py` asks the way people ask from memory: paraphrases, where the dense side
is strong and BM25 weak. Public reading-comprehension sets (questions written by someone reading
the paragraph) have the opposite shape: the question copies the paragraph's rare words ("Which
starfish feeds on coral …"), BM25 is strong and a small embedding model is the weaker side.
Both kinds of asker are real, so the fusion is measured on both.

`tests/perf/eval_articles.txt` holds 26 encyclopedia-style articles written for this project,
four paragraphs each (104 paragraphs, one file per paragraph, so that the paragraphs of one
article, on the same subject and under the same title, are each other's distractors), and two
questions per paragraph (208). `write_corpus(root)` writes them under root/articles; `cases()`
returns `knowledge.eval.EvalCase`s whose expected source is the paragraph's file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from knowledge.eval import EvalCase

ARTICLES = Path(__file__).with_name("eval_articles.txt")
FOLDER = "articles"


@dataclass(frozen=True)
class Paragraph:
    file: str
    title: str
    body: str
    questions: tuple[str, ...]


def paragraphs() -> list[Paragraph]:
    """Every paragraph of the article file, in order."""
    found: list[Paragraph] = []
    for block in ARTICLES.read_text("utf-8").split("\n## ")[1:]:
        head, *lines = block.strip().splitlines()
        file, title = (part.strip() for part in head.split("|", 1))
        body = " ".join(line.strip() for line in lines if not line.startswith("?"))
        questions = tuple(line[1:].strip() for line in lines if line.startswith("?"))
        found.append(Paragraph(file, title, body, questions))
    return found


def write_corpus(root: Path) -> None:
    """One Markdown file per paragraph under root/articles, titled by its article."""
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for paragraph in paragraphs():
        (folder / paragraph.file).write_text(f"# {paragraph.title}\n\n{paragraph.body}\n", "utf-8")


def cases() -> list[EvalCase]:
    """Every question, expecting its paragraph's file."""
    return [EvalCase(q, (f"{FOLDER}/{p.file}",)) for p in paragraphs() for q in p.questions]
