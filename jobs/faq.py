"""The managed FAQ: answers people gave in handed-off threads, approved in the console.

Approved candidates are appended to one CSV (question,answer) in a folder teambot owns, indexed
as the knowledge source "handoff-faq" (a directory source; the FAQ loader makes each row a
`## question` section), so the next asker gets the person's answer with a citation.
"""

from __future__ import annotations

import asyncio
import csv
import io
import logging
from pathlib import Path

from knowledge import KnowledgeBase, RefreshReport, SourceSettings

log = logging.getLogger(__name__)

SOURCE = "handoff-faq"
FILENAME = "handoff-faq.csv"


class ManagedFaq:
    """The CSV file and the knowledge source that indexes it."""

    def __init__(self, folder: Path | str, collection: str = "default") -> None:
        self.folder = Path(folder).expanduser()
        self.collection = collection
        self._lock = asyncio.Lock()

    @property
    def path(self) -> Path:
        return self.folder / FILENAME

    @property
    def source(self) -> SourceSettings:
        return SourceSettings(
            name=SOURCE,
            kind="directory",
            location=str(self.folder.resolve()),
            include=[FILENAME],
            collection=self.collection,
        )

    async def append(self, question: str, answer: str) -> None:
        """Add one question and answer (the header is written with the first row)."""
        async with self._lock:
            await asyncio.to_thread(self._append, question.strip(), answer.strip())

    def _append(self, question: str, answer: str) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        if new:
            writer.writerow(["question", "answer"])
        writer.writerow([question, answer])
        with self.path.open("a", encoding="utf-8", newline="") as handle:
            handle.write(buffer.getvalue())

    def rows(self) -> list[tuple[str, str]]:
        """The questions and answers in the file (header left out)."""
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.reader(handle))
        return [(r[0], r[1]) for r in rows[1:] if len(r) >= 2]

    async def refresh(self, kb: KnowledgeBase) -> RefreshReport | None:
        """Index the file now (incremental: an unchanged file costs a hash); None without one."""
        if not await asyncio.to_thread(self.path.exists):
            return None
        try:
            report = await kb.ingestor.refresh(self.source)
        except Exception:  # the scheduler and the console keep going whatever indexing does
            log.exception("indexing the managed FAQ %s failed", self.path)
            return None
        log.info("managed FAQ %s: %s", report.result, report.summary())
        return report
