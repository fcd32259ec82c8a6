"""Reading pictures (knowledge/ocr.py) through the one parsing entry: screenshots rendered from
HTML by headless Chromium (tests/screenshots, committed PNGs), scanned PDF pages, and the type
decided from the bytes (knowledge/sniff.py) whatever the name says."""

from __future__ import annotations

import io
import struct
import time
import zlib
from pathlib import Path

import pytest

from knowledge.errors import LoadError
from knowledge.parsing import parse_bytes
from knowledge.sniff import sniff
from tests.knowledge import files

SCREENSHOTS = Path(__file__).parent.parent / "screenshots"


def accuracy(expected: str, got: str) -> float:
    """Character accuracy: 1 - edit distance / length, whitespace left out on both sides."""
    a, b = "".join(expected.split()), "".join(got.split())
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, start=1):
        current = [i]
        for j, y in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return max(0.0, 1 - previous[-1] / max(len(a), 1))


@pytest.mark.parametrize(
    ("page", "floor"), [("error_dialog", 0.95), ("english_page", 0.97), ("chinese_page", 0.95)]
)
async def test_screenshots_are_read_in_chinese_and_english(page: str, floor: float) -> None:
    data = (SCREENSHOTS / f"{page}.png").read_bytes()
    found = sniff(data, "shot.pdf")  # the name lies: the bytes decide
    assert found.kind == "image" and found.mime == "image/png"
    document = await parse_bytes(data, "image", uri=f"attached:{page}", name=page)
    expected = (SCREENSHOTS / f"{page}.txt").read_text(encoding="utf-8")
    score = accuracy(expected, document.text)
    print(f"\n{page}: character accuracy {score:.3f}")
    assert score >= floor, document.text


async def test_the_error_code_in_a_dialog_is_read_whole() -> None:
    data = (SCREENSHOTS / "error_dialog.png").read_bytes()
    document = await parse_bytes(data, "image", uri="attached:shot.png", name="shot.png")
    assert "TX-7781" in document.text
    assert "许可证服务器无法访问" in document.text


def _scanned_pdf(png: bytes) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.open(io.BytesIO(png)).convert("RGB").save(out, "PDF", resolution=96.0)
    return out.getvalue()


async def test_a_scanned_pdf_page_is_read_by_ocr_beside_a_text_page() -> None:
    from pypdf import PdfReader, PdfWriter

    scan = PdfReader(io.BytesIO(_scanned_pdf((SCREENSHOTS / "english_page.png").read_bytes())))
    text = PdfReader(io.BytesIO(files.pdf(["Release notes for version 4.2"])))
    writer = PdfWriter()
    writer.add_page(text.pages[0])
    writer.add_page(scan.pages[0])
    out = io.BytesIO()
    writer.write(out)
    document = await parse_bytes(out.getvalue(), "pdf", uri="attached:mixed.pdf", name="mixed")
    pages = document.text.split("\f")
    assert pages[0] == "Release notes for version 4.2"
    assert "BK-2093" in pages[1] and "disk quota exceeded" in pages[1]


async def test_an_encrypted_pdf_is_refused_with_the_reason() -> None:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(files.pdf(["secret plans"]))))
    writer.encrypt("pw")
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(LoadError, match="password-protected"):
        await parse_bytes(out.getvalue(), "pdf", uri="attached:x.pdf", name="x")


def _png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width`×`height` pixels with almost no data behind the claim."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


async def test_a_30000_pixel_square_png_is_refused_before_it_is_decoded() -> None:
    started = time.monotonic()
    with pytest.raises(LoadError, match="30,000×30,000 pixels"):
        await parse_bytes(_png_header(30000, 30000), "image", uri="attached:big", name="big")
    with pytest.raises(LoadError, match="9,000×9,000 pixels"):  # under Pillow's own ceiling
        await parse_bytes(_png_header(9000, 9000), "image", uri="attached:big", name="big")
    assert time.monotonic() - started < 2


async def test_a_truncated_screenshot_is_refused_as_damaged() -> None:
    data = (SCREENSHOTS / "error_dialog.png").read_bytes()
    with pytest.raises(LoadError, match="damaged or truncated"):
        await parse_bytes(data[: len(data) // 3], "image", uri="attached:cut", name="cut")


@pytest.mark.parametrize(
    ("data", "name", "kind", "suffix"),
    [
        (files.docx("Plan", [("Dates", "May")]), "plan.pdf", "docx", ".docx"),
        (files.xlsx([["question", "answer"], ["q", "a"]]), "faq.bin", "faq", ".xlsx"),
        (files.pdf(["hello"]), "hello.png", "pdf", ".pdf"),
        (b"\xff\xd8\xff\xe0rest", "photo.txt", "image", ".jpg"),
        (b"# Notes\n\nhello", "notes.md", "markdown", ".md"),
        ("问题,答案\n密码,重置".encode(), "faq.csv", "faq", ".csv"),
        (b"<!DOCTYPE html><html><body>x</body></html>", "page.txt", "html", ".html"),
        (b"plain words", "", "text", ".txt"),
    ],
)
def test_the_type_comes_from_the_bytes(data: bytes, name: str, kind: str, suffix: str) -> None:
    found = sniff(data, name)
    assert (found.kind, found.suffix) == (kind, suffix)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 100, "old Office file"),
        (b"PK\x03\x04" + b"\x00" * 100, "damaged or truncated"),
        (b"\x00\x00\x00\x18ftypmp42", "video"),
        (b"ID3\x03\x00" + b"\x00" * 100, "audio"),
        (b"", "empty"),
        (b"\x01\x02\x00\x03" * 10, "binary data"),
    ],
)
def test_files_that_are_not_read_say_what_they_are(data: bytes, reason: str) -> None:
    with pytest.raises(LoadError, match=reason):
        sniff(data, "x.docx")
