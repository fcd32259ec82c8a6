"""Hostile documents cost a refusal with its reason, not the server's memory or time: zip bombs,
huge images, endless PDFs, encrypted and truncated files, wrong labels; and a worker that runs
out of time or memory is replaced, so the next document parses as usual."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from knowledge import Embedder, KnowledgeBase, SourceSettings
from knowledge.config import ParseLimits
from knowledge.errors import LoadError
from knowledge.parsing import parse_bytes
from knowledge.sandbox import Sandbox
from knowledge.uploads import upload
from tests.helpers import kb_settings
from tests.knowledge import bombs, files


async def refused(data: bytes, kind: str, suffix: str) -> str:
    """The refusal's reason; fails unless it came as a LoadError within 20 s."""
    started = time.monotonic()
    with pytest.raises(LoadError) as caught:
        await parse_bytes(data, kind, uri=f"t/f{suffix}", name="f", suffix=suffix)
    assert time.monotonic() - started < 20
    return str(caught.value)


@pytest.fixture(scope="module")
def docx_bomb() -> bytes:
    """~1 MB on disk, 300 MB inflated: the issue's bomb."""
    return bombs.docx_bomb(300, padding_kb=700)


async def test_a_docx_bomb_is_refused_by_its_inflated_size(docx_bomb: bytes) -> None:
    assert 900_000 < len(docx_bomb) < 1_500_000
    reason = await refused(docx_bomb, "docx", ".docx")
    assert re.search(r"this \.docx would inflate to 30\d MB \(limit 100 MB", reason), reason
    assert "knowledge.parsing.max_inflated_mb" in reason


async def test_a_small_bomb_is_refused_by_its_ratio() -> None:
    reason = await refused(bombs.docx_bomb(40), "docx", ".docx")
    assert "word/document.xml in this .docx inflates" in reason, reason
    assert "limit 200×" in reason


async def test_a_huge_image_inside_a_docx_is_refused_by_its_header() -> None:
    document = bombs.docx_with_image(bombs.png_header(30000, 30000))
    reason = await refused(document, "docx", ".docx")
    assert "30,000×30,000 pixels" in reason and "limit 50" in reason, reason


async def test_a_huge_attached_image_is_refused_by_its_header() -> None:
    """A 30000×30000 PNG sent as an attachment is refused before anything decodes it."""
    reason = await refused(bombs.png_header(30000, 30000), "image", ".png")
    assert "30,000×30,000 pixels" in reason, reason


async def test_a_pdf_of_ten_thousand_pages_is_refused() -> None:
    reason = await refused(files.pdf(["page"] * 10_000), "pdf", ".pdf")
    assert "this PDF has 10,000 pages (limit 2,000" in reason, reason


async def test_an_encrypted_pdf_is_refused_with_what_to_do() -> None:
    reason = await refused(bombs.encrypted_pdf(), "pdf", ".pdf")
    assert "password-protected" in reason and "without a password" in reason, reason


async def test_truncated_files_are_refused_cleanly() -> None:
    document = files.docx("Leave", [("Days", "Twenty-five days a year.")])
    reason = await refused(document[: len(document) // 2], "docx", ".docx")
    assert "damaged or truncated" in reason, reason
    sheet = files.xlsx([["question", "answer"], ["Q?", "A."]])
    assert "damaged or truncated" in await refused(sheet[:-100], "faq", ".xlsx")
    pdf = files.pdf(["Payroll runs on the 25th."])
    reason = await refused(pdf[:40], "pdf", ".pdf")
    assert reason.startswith("cannot parse as pdf") or "no text" in reason, reason


async def test_mislabelled_files_are_refused_by_what_they_are() -> None:
    png = bombs.png_header(10, 10)
    assert "labelled PDF but its content is a PNG image" in await refused(png, "pdf", ".pdf")
    pdf = files.pdf(["x"])
    assert "labelled Word .docx but its content is a PDF" in await refused(pdf, "docx", ".docx")
    document = files.docx("T", [("H", "b")])
    assert "this markdown file is a zip archive" in await refused(document, "markdown", ".md")
    sheet = files.xlsx([["q", "a"]])
    assert "labelled Word .docx" not in await refused(sheet, "docx", ".docx")  # a zip: parsed


async def test_good_documents_still_parse() -> None:
    document = files.docx("Leave", [("Days", "Twenty-five days a year.")])
    parsed = await parse_bytes(document, "docx", uri="t/leave.docx", name="leave", suffix=".docx")
    assert "Twenty-five days" in parsed.text
    pdf = files.pdf(["Payroll runs on the 25th."] * 3, title="Payroll")
    parsed = await parse_bytes(pdf, "pdf", uri="t/p.pdf", name="p", suffix=".pdf")
    assert parsed.title == "Payroll" and parsed.text.count("25th") == 3


@pytest.fixture
async def strict() -> AsyncIterator[Sandbox]:
    sandbox = Sandbox(ParseLimits(workers=1, timeout=1.0, memory_mb=400))
    yield sandbox
    sandbox.close()


async def test_a_parse_past_the_timeout_is_stopped_and_the_worker_replaced(
    strict: Sandbox,
) -> None:
    await strict.run(len, b"warm")
    started = time.monotonic()
    with pytest.raises(LoadError, match=r"parsing took longer than 1 s \(knowledge.parsing"):
        await strict.run(time.sleep, 30)
    assert time.monotonic() - started < 5
    assert await strict.run(len, b"next") == 4  # a fresh worker took over


async def test_a_parse_past_the_memory_limit_is_refused_and_the_worker_replaced(
    strict: Sandbox,
) -> None:
    with pytest.raises(LoadError, match=r"needed more than 400 MB of memory"):
        await strict.run(bytearray, 2_000_000_000)
    assert await strict.run(len, b"next") == 4


async def test_a_bomb_beside_a_good_document_in_a_folder(
    tmp_path: Path, kb: KnowledgeBase, docx_bomb: bytes
) -> None:
    folder = tmp_path / "handbook"
    folder.mkdir()
    (folder / "bomb.docx").write_bytes(docx_bomb)
    (folder / "huge.pdf").write_bytes(files.pdf(["x"] * 10_000))
    (folder / "parking.md").write_text(
        "# Parking\n\nVisitors park in bay 7 behind the north gate.\n", encoding="utf-8"
    )
    await kb.add_source(SourceSettings(name="handbook", kind="directory", location=str(folder)))
    report = await kb.refresh("handbook")
    assert report.added == 1, report
    assert "would inflate to 301 MB" in report.failed["handbook/bomb.docx"]
    assert "10,000 pages" in report.failed["handbook/huge.pdf"]
    found = await kb.retriever.retrieve("where do visitors park?")
    assert found and found[0].title == "Parking"


async def test_an_uploaded_bomb_is_refused_and_the_other_files_indexed(
    tmp_path: Path, embedder: Embedder, docx_bomb: bytes
) -> None:
    settings = kb_settings(tmp_path / "chroma").model_copy(
        update={"uploads_dir": tmp_path / "uploads"}
    )
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        good = b"# Lockers\n\nLockers open with your badge after 7 am.\n"
        bomb, ok = await upload(kb, [("bomb.docx", docx_bomb), ("lockers.md", good)])
        assert not bomb.ok and "would inflate to 301 MB" in bomb.message, bomb
        assert ok.ok and ok.chunks >= 1, ok
        assert not (tmp_path / "uploads" / "bomb.docx").exists()  # a refused file is not kept
    finally:
        await kb.close()
