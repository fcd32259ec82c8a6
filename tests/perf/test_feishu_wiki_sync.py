"""A 2,000-page Feishu wiki space against the fake Open API through lark-oapi: API calls and
seconds for the first sync, an unchanged refresh and a refresh after one edited page.

Run on demand (prints figures; asserts the issue's bounds on calls):
    .venv/bin/python -m pytest tests/perf/test_feishu_wiki_sync.py -s -p no:cacheprovider
TEAMBOT_BENCH_WIKI_PAGES sets the size (default 2000). Feishu's own rate limits are lifted for
the run (they would dominate: reading 2,000 docx at ~5 calls/s takes ~7 minutes), so the
seconds measure teambot; the call counts are what Feishu would see.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from adapters.feishu.documents import Watch, api, feishu_kinds
from knowledge import Embedder, KnowledgeBase, SourceSettings, builtin_kinds
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_support import settings_for
from tests.helpers import kb_settings

pytestmark = pytest.mark.perf
PAGES = int(os.environ.get("TEAMBOT_BENCH_WIKI_PAGES", "2000"))
SECTIONS = 10
SPACE = "7034502641455497244"


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


def calls(fake: FakeFeishu, since: int) -> Counter[str]:
    counted: Counter[str] = Counter()
    for call in fake.calls[since:]:
        if call.path.endswith("/nodes"):
            counted["listing"] += 1
        elif "/docx/" in call.path:
            counted["content"] += 1
        elif "tenant_access_token" not in call.path:
            counted["other"] += 1
    return counted


async def test_a_2000_page_space(
    fake: FakeFeishu, embedder: Embedder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(api, "_LIMITS", dict.fromkeys(api._LIMITS, 1_000_000))
    per_section = PAGES // SECTIONS - 1
    pages = []
    for s in range(SECTIONS):
        section = fake.docs.page(SPACE, f"Section {s}", f"# Section {s}\n\nTeam {s}'s notes.\n")
        pages += [
            fake.docs.page(
                SPACE,
                f"Runbook {s}-{n}",
                f"# Runbook {s}-{n}\n\n## Steps\n\nRestart service {s}-{n} with the "
                f"blue-{n} switch, then check dashboard {s}.\n",
                parent=section.node_token,
            )
            for n in range(per_section)
        ]
    nodes = len(fake.docs.nodes)
    kinds = builtin_kinds()
    for kind in feishu_kinds(settings_for(fake), Watch()):
        kinds.register(kind)
    kb = await KnowledgeBase.open(kb_settings(tmp_path / "chroma"), embedder=embedder, kinds=kinds)
    try:
        await kb.add_source(SourceSettings(name="wiki", kind="feishu_wiki", location=SPACE))
        rows = []
        for label, change in (("first sync", None), ("unchanged", None), ("one edited", pages[7])):
            if change is not None:
                fake.docs.edit(change, change.text.replace("blue", "green"))
            since, started = len(fake.calls), time.perf_counter()
            report = await kb.refresh("wiki")
            seconds = time.perf_counter() - started
            assert report.result == "ok", report
            rows.append((label, calls(fake, since), seconds, report))
    finally:
        await kb.close()

    print(f"\n{nodes} nodes ({PAGES} pages in {SECTIONS} sections), page_size 50")
    print(f"{'run':<12} {'listing':>8} {'content':>8} {'other':>6} {'seconds':>8}  report")
    for label, counted, seconds, report in rows:
        print(
            f"{label:<12} {counted['listing']:>8} {counted['content']:>8} {counted['other']:>6} "
            f"{seconds:>8.1f}  {report.summary()}"
        )
    _, unchanged, _, _ = rows[1]
    assert unchanged["content"] == 0
    # one call per full page of 50 children, plus the top level's own page
    assert unchanged["listing"] <= nodes // 50 + 1
    assert rows[2][1]["content"] == 1
