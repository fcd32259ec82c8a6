"""Changes arrive fast: after a sync the listed documents are subscribed, and a
`drive.file.edit_v1` over the long connection re-reads that one document within seconds;
`drive.file.trashed_v1` takes it out."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from adapters.feishu.adapter import FeishuAdapter
from adapters.feishu.documents import Watch, feishu_kinds
from adapters.feishu.documents.events import DocumentEvents
from knowledge import Embedder, KnowledgeBase, SourceSettings, builtin_kinds
from tests.fakes.feishu import FakeFeishu
from tests.fakes.feishu_events import drive_event
from tests.fakes.feishu_support import settings_for
from tests.helpers import Core, kb_settings

SPACE = "7034502641455497244"
QUESTION = "What is the third-floor printer called?"


@pytest.fixture
def fake() -> Iterator[FakeFeishu]:
    with FakeFeishu(ping_interval=1) as server:
        yield server


@pytest.fixture
async def kb(fake: FakeFeishu, embedder: Embedder, tmp_path: Path) -> AsyncIterator[KnowledgeBase]:
    kinds = builtin_kinds()
    for kind in feishu_kinds(settings_for(fake), WATCH):
        kinds.register(kind)
    base = await KnowledgeBase.open(
        kb_settings(tmp_path / "chroma"), embedder=embedder, kinds=kinds
    )
    yield base
    await base.close()


WATCH = Watch()


async def until(check: Callable[[], Awaitable[bool]], seconds: float = 10.0) -> float:
    started = time.monotonic()
    while not await check():
        if time.monotonic() - started > seconds:
            pytest.fail(f"not within {seconds} s")
        await asyncio.sleep(0.1)
    return time.monotonic() - started


async def test_an_edit_event_re_reads_that_document_within_seconds(
    fake: FakeFeishu, kb: KnowledgeBase, core: Core
) -> None:
    feishu = settings_for(fake, mode="long_connection")
    adapter = FeishuAdapter(feishu, core.conversation)
    await adapter.start()
    events = DocumentEvents(kb, WATCH)
    try:
        assert events.start(feishu, [adapter])
        printer = fake.docs.page(
            SPACE, "Printers", "# Printers\n\nThe third-floor printer is Kestrel."
        )
        other = fake.docs.page(SPACE, "VPN", "# VPN\n\nThe VPN gateway is vpn.acme.example.")
        await kb.add_source(SourceSettings(name="wiki", kind="feishu_wiki", location=SPACE))
        assert (await kb.refresh("wiki")).added == 2

        async def subscribed() -> bool:
            return fake.docs.subscribed == {printer.obj_token, other.obj_token}

        await until(subscribed)

        fake.docs.edit(printer, "# Printers\n\nThe third-floor printer is Osprey now.")
        reads = len(fake.calls_to("GET", r".*/blocks"))
        fake.push_event(drive_event("edit_v1", printer.obj_token))

        async def served() -> bool:
            [top] = await kb.retriever.retrieve(QUESTION, k=1)
            return "Osprey" in top.text

        waited = await until(served)
        print(f"\nedit event -> new text served in {waited:.2f} s")
        read = fake.calls_to("GET", r".*/blocks")[reads:]
        assert [c.path.split("/")[5] for c in read] == [printer.obj_token]  # that one alone

        fake.docs.delete(printer)
        fake.push_event(drive_event("trashed_v1", printer.obj_token))

        async def gone() -> bool:
            found = await kb.retriever.retrieve(QUESTION, k=3)
            return all(p.location.rsplit("/", 1)[-1] != printer.node_token for p in found)

        await until(gone)
    finally:
        await events.stop()
        await adapter.stop()
