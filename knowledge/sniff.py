"""What a file is, decided from its bytes (magic numbers), never from its name or declared type:
a mislabelled or renamed file is read as what it is, or refused with the reason.

`sniff` returns the loader kind (`knowledge.loaders.parse`) with a suffix and a MIME type, or
raises `LoadError` saying what the file seems to be and why it cannot be read.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass

from knowledge.errors import LoadError

__all__ = ["Sniffed", "sniff"]


@dataclass(frozen=True, slots=True)
class Sniffed:
    kind: str  # a loader kind: image | pdf | docx | faq | html | markdown | text
    suffix: str  # ".png", ".pdf", ".xlsx" … (the loader picks a parser by it where kinds share)
    mime: str


_IMAGES = (
    (b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    (b"\xff\xd8\xff", ".jpg", "image/jpeg"),
    (b"GIF87a", ".gif", "image/gif"),
    (b"GIF89a", ".gif", "image/gif"),
    (b"BM", ".bmp", "image/bmp"),
    (b"II*\x00", ".tif", "image/tiff"),
    (b"MM\x00*", ".tif", "image/tiff"),
)
# Recognised but not read: said by name so the asker knows what to send instead.
_REFUSED = (
    (
        b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
        "an old Office file (.doc/.xls/.ppt): save it as .docx or .xlsx",
    ),
    (b"Rar!", "a RAR archive: send the files inside it"),
    (b"7z\xbc\xaf\x27\x1c", "a 7z archive: send the files inside it"),
    (b"\x1f\x8b", "a gzip archive: send the files inside it"),
    (b"ID3", "an audio file: only images and documents are read"),
    (b"OggS", "an audio file: only images and documents are read"),
    (b"\x1aE\xdf\xa3", "a video file: only images and documents are read"),
    (b"MZ", "a program: only images and documents are read"),
    (b"\x7fELF", "a program: only images and documents are read"),
)
_TEXT_SUFFIXES = {".md": "markdown", ".markdown": "markdown", ".csv": "faq"}


def sniff(data: bytes, name: str = "") -> Sniffed:
    """The kind of `data`; `name` only chooses between text formats (Markdown, CSV, plain)."""
    head = data[:16]
    if not data:
        raise LoadError("the file is empty")
    for magic, suffix, mime in _IMAGES:
        if head.startswith(magic):
            return Sniffed("image", suffix, mime)
    if head.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return Sniffed("image", ".webp", "image/webp")
    if head.startswith(b"%PDF-") or b"%PDF-" in data[:1024]:
        return Sniffed("pdf", ".pdf", "application/pdf")
    if head.startswith(b"PK\x03\x04"):
        return _office(data)
    if data[4:8] == b"ftyp":
        raise LoadError("a video or HEIC photo: send a screenshot as PNG or JPEG")
    for magic, reason in _REFUSED:
        if head.startswith(magic):
            raise LoadError(f"unsupported file type: {reason}")
    return _text(data, name)


def _office(data: bytes) -> Sniffed:
    try:
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())  # the central directory only
    except (zipfile.BadZipFile, ValueError) as exc:
        raise LoadError(f"a damaged or truncated zip/Office file ({exc})") from exc
    if "word/document.xml" in names:
        return Sniffed(
            "docx",
            ".docx",
            "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        )
    if "xl/workbook.xml" in names:
        return Sniffed(
            "faq", ".xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        )
    if "ppt/presentation.xml" in names:
        raise LoadError("unsupported file type: a PowerPoint file: export it as PDF")
    raise LoadError("unsupported file type: a zip archive: send the files inside it")


def _text(data: bytes, name: str) -> Sniffed:
    sample = data[:4096]
    if b"\x00" in sample:
        raise LoadError("unsupported file type: binary data that is not an image or document")
    lowered = sample.lstrip().lower()
    if lowered.startswith((b"<!doctype html", b"<html")) or b"<body" in lowered:
        return Sniffed("html", ".html", "text/html")
    suffix = "." + name.rsplit(".", 1)[-1].lower() if "." in name else ".txt"
    kind = _TEXT_SUFFIXES.get(suffix, "text")
    mime = {"markdown": "text/markdown", "faq": "text/csv"}.get(kind, "text/plain")
    return Sniffed(kind, suffix if kind != "text" else ".txt", mime)
