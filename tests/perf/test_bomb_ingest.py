"""Benchmark: a decompression bomb ingested beside a good document while `teambot serve` runs.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_bomb_ingest.py -s -p no:cacheprovider`.

A ~1 MB .docx that inflates to 300 MB and a Markdown page go into one folder; `teambot ingest`
(another process, through the server's admin API) indexes it. Meanwhile the server's memory
(its own RSS, and with its parser processes) is sampled every 50 ms and `/readyz` every 0.3 s.
Prints the peaks; asserts the issue's bounds: peak under 1.5 GB, the bomb reported with its
reason, the good document cited, `/readyz` ready throughout.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_live_knowledge import serve
from tests.knowledge.bombs import docx_bomb

pytestmark = pytest.mark.perf
LIMIT_MB = 1536


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def descendants(pid: int) -> list[int]:
    found: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                found.append(int(child))
                found.extend(descendants(int(child)))
    except OSError:
        pass
    return found


class Watch:
    """Samples the server's memory and readiness in threads until stopped."""

    def __init__(self, pid: int, url: str) -> None:
        self.pid, self.url = pid, url
        self.peak_server = self.peak_tree = 0.0
        self.not_ready: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._memory),
            threading.Thread(target=self._ready),
        ]

    def __enter__(self) -> Watch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _memory(self) -> None:
        while not self._stop.wait(0.05):
            server = rss_mb(self.pid)
            tree = server + sum(rss_mb(child) for child in descendants(self.pid))
            self.peak_server, self.peak_tree = (
                max(self.peak_server, server),
                max(self.peak_tree, tree),
            )

    def _ready(self) -> None:
        while not self._stop.wait(0.3):
            try:
                response = httpx.get(f"{self.url}/readyz", timeout=5)
                if response.status_code != 200:
                    self.not_ready.append(response.text[:200])
            except httpx.HTTPError as error:
                self.not_ready.append(repr(error))


def test_a_bomb_beside_a_good_document_while_serving(tmp_path: Path, sample_index: Path) -> None:
    process, served = serve(tmp_path / "app", sample_index)
    try:
        kb = served.workdir / "kb"
        kb.mkdir()
        bomb = docx_bomb(300, padding_kb=700)
        (kb / "bomb.docx").write_bytes(bomb)
        (kb / "parking.md").write_text(
            "# Parking\n\nVisitors park in bay 7 behind the north gate; the code is 4471.\n",
            encoding="utf-8",
        )
        before = rss_mb(process.pid)
        with Watch(process.pid, served.url) as watch:
            started = time.monotonic()
            done = served.teambot("ingest", str(kb))
            ingest = time.monotonic() - started
            cited = served.within(
                10,
                "Where do visitors park?",
                lambda c: "kb/parking.md" in {x["location"] for x in c},
            )
        output = done.stdout + done.stderr
        print(
            f"\nbomb {len(bomb) / 1e6:.2f} MB on disk (300 MB inflated) beside parking.md: "
            f"ingest {ingest:.1f} s, good document cited {cited:.1f} s after\n"
            f"server RSS {before:.0f} MB before, peak {watch.peak_server:.0f} MB; "
            f"with its parser processes peak {watch.peak_tree:.0f} MB (limit {LIMIT_MB} MB)\n"
            f"/readyz not ready {len(watch.not_ready)} times\n"
            f"teambot ingest said:\n{output}"
        )
        assert "would inflate to 301 MB (limit 100 MB" in output, output
        assert watch.peak_tree < LIMIT_MB
        assert not watch.not_ready, watch.not_ready
    finally:
        process.terminate()
        process.wait(timeout=30)
