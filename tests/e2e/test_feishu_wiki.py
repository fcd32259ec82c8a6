"""A Feishu wiki as an operator adds it while `teambot serve` runs: `teambot sources add wiki
feishu_wiki SPACE_ID` and `teambot refresh wiki` make the server cite the page with a link
holding its node token, in English and Chinese; an edited page is read alone and served new;
a page deleted in the wiki is no longer cited."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_live_knowledge import Served, serve
from tests.fakes.feishu import FakeFeishu

SPACE = "7034502641455497244"
PRINTER_Q = "What is the third-floor printer called?"
LEAVE_Q = "每年有几天年假？"


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu() as server:
        yield server


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, sample_index: Path, fake: FakeFeishu
) -> Iterator[Served]:
    process, running = serve(
        tmp_path_factory.mktemp("feishu") / "app",
        sample_index,
        TEAMBOT_FEISHU__APP_ID=fake.app_id,
        TEAMBOT_FEISHU__APP_SECRET=fake.app_secret,
        TEAMBOT_FEISHU__DOMAIN=fake.url,
    )
    try:
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def answer(served: Served, question: str) -> str:
    body = {
        "chat_id": "browser-1",
        "thread_id": f"t-{time.monotonic_ns()}",
        "message_id": f"m-{time.monotonic_ns()}",
        "text": question,
    }
    with httpx.stream("POST", f"{served.url}/api/chat", json=body, timeout=30) as response:
        for line in response.iter_lines():
            if line.startswith("data: ") and '"final"' in line:
                return str(json.loads(line[6:])["answer"]["text"])
    raise AssertionError("no final answer")


def links(citations: list[dict[str, Any]]) -> set[str]:
    return {c["location"] for c in citations}


def test_a_wiki_added_from_the_cli_is_cited_and_follows_the_wiki(
    fake: FakeFeishu, served: Served
) -> None:
    docs = fake.docs
    top = docs.page(SPACE, "IT", "# IT\n\nWhere the IT team keeps its notes.\n")
    printer = docs.page(
        SPACE,
        "Printers",
        "# Printers\n\n## Third floor\n\nThe third-floor printer is called "
        "Kestrel. Ask the front desk for toner.\n",
        parent=top.node_token,
    )
    leave = docs.page(SPACE, "年假", "# 年假\n\n## 天数\n\n员工每年有十五天年假，请向经理申请。\n")
    out = ok(served.teambot("sources", "add", "wiki", "feishu_wiki", SPACE))
    assert "3 added" in out, out  # added, then refreshed at once
    out = ok(served.teambot("refresh", "wiki"))
    assert "3 unchanged" in out, out
    printer_link = f"https://acme.feishu.cn/wiki/{printer.node_token}"
    served.within(5, PRINTER_Q, lambda c: printer_link in links(c))
    served.within(5, LEAVE_Q, lambda c: any(leave.node_token in x for x in links(c)))
    cited = next(c for c in served.cited(PRINTER_Q) if c["location"] == printer_link)
    assert cited["title"] == "Printers"

    before = len(fake.calls_to("GET", r".*/blocks"))
    docs.edit(
        printer,
        "# Printers\n\n## Third floor\n\nThe third-floor printer is called "
        "Osprey now. Ask the front desk for toner.\n",
    )
    out = ok(served.teambot("refresh", "wiki"))
    assert "1 changed" in out and "2 unchanged" in out, out
    read = fake.calls_to("GET", r".*/blocks")[before:]
    assert [c.path.split("/")[5] for c in read] == [printer.obj_token]
    served.within(
        5,
        PRINTER_Q,
        lambda c: (
            any("Osprey" in x.get("text", x.get("snippet", "")) for x in c)
            or printer_link in links(c)
        ),
    )

    docs.delete(leave)
    out = ok(served.teambot("refresh", "wiki"))
    assert "1 removed" in out, out
    served.within(5, LEAVE_Q, lambda c: not any(leave.node_token in x for x in links(c)))
