"""What a document may cost, checked before and while it is parsed: its real type against its
label, a zip container's entries (declared and actual inflated size, ratio, count), image
pixels, PDF pages and sheet cells. Each check raises `LoadError` with the reason in words.

These run inside the parser process (`knowledge.sandbox`), whose memory limit and timeout stay
the backstop for whatever a check cannot foresee.
"""

from __future__ import annotations

import io
import struct
import zipfile

from knowledge.config import ParseLimits
from knowledge.errors import LoadError

__all__ = ["Cells", "check_bytes", "check_image", "check_pages", "check_zip", "image_size"]

_MB = 1_048_576
_CHUNK = 1 << 20
_RATIO_FLOOR = _MB  # entries smaller than this inflated are not judged by their ratio
_IMAGES = (".png", ".jpg", ".jpeg", ".gif", ".bmp")

# (signature, what it is, the kinds whose label it fits)
_SIGNATURES: tuple[tuple[bytes, str, frozenset[str]], ...] = (
    (b"%PDF-", "a PDF", frozenset({"pdf"})),
    (b"PK\x03\x04", "a zip archive (Word, Excel)", frozenset({"docx", "xlsx"})),
    (b"\x89PNG\r\n\x1a\n", "a PNG image", frozenset({"image"})),
    (b"\xff\xd8\xff", "a JPEG image", frozenset({"image"})),
    (b"GIF8", "a GIF image", frozenset({"image"})),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old Office file (.doc/.xls)", frozenset()),
    (b"\x1f\x8b", "a gzip archive", frozenset()),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive", frozenset()),
    (b"Rar!\x1a\x07", "a RAR archive", frozenset()),
)
_LABELS = {"pdf": "PDF", "docx": "Word .docx", "xlsx": "Excel .xlsx"}


def _mb(count: float) -> str:
    return f"{count / _MB:,.0f} MB" if count >= 10 * _MB else f"{count / _MB:.1f} MB"


def check_bytes(data: bytes, kind: str, suffix: str, limits: ParseLimits) -> None:
    """The content is what its label says, and a zip container is within the limits."""
    label = "xlsx" if suffix == ".xlsx" else kind
    found = next(((what, fits) for sig, what, fits in _SIGNATURES if data.startswith(sig)), None)
    if label == "pdf" and found is None and b"%PDF-" in data[:1024]:
        return  # the PDF header may follow some junk; readers accept it
    if label in _LABELS:
        if found is None or label not in found[1]:
            what = found[0] if found else "not one (no known file signature)"
            raise LoadError(
                f"类型不符 / this file is labelled {_LABELS[label]} but its content is {what}: "
                "refused (save it in the format its name says)"
            )
        if label in ("docx", "xlsx"):
            check_zip(data, f".{label}", limits)
    elif label == "image":  # attachments: the type was decided from these bytes (sniff)
        if found is not None and "image" not in found[1]:
            raise LoadError(f"类型不符 / this image is {found[0]}: refused")
        check_image(data[:65_536], limits)
    elif found is not None:
        raise LoadError(f"类型不符 / this {kind} file is {found[0]}: refused")


def check_zip(data: bytes, label: str, limits: ParseLimits) -> None:
    """Entries counted, declared sizes and ratios checked, then every entry inflated in chunks
    (never held) to check the actual sizes and checksums; images' pixels checked by header."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise LoadError(
            f"文件损坏 / this {label} is damaged or truncated (not a complete zip): {error}"
        ) from error
    with archive:
        entries = archive.infolist()
        if len(entries) > limits.max_entries:
            raise LoadError(
                f"文件过多 / this {label} holds {len(entries):,} files "
                f"(limit {limits.max_entries:,}, knowledge.parsing.max_entries): refused"
            )
        _declared(entries, label, limits)
        _actual(archive, entries, label, limits)


def _bomb(label: str, size: float, limits: ParseLimits, more: str = "") -> LoadError:
    return LoadError(
        f"解压后过大 / this {label} would inflate to {more}{_mb(size)} "
        f"(limit {limits.max_inflated_mb:g} MB, knowledge.parsing.max_inflated_mb): refused"
    )


def _ratio_error(label: str, name: str, ratio: float, limits: ParseLimits) -> LoadError:
    return LoadError(
        f"压缩比异常 / {name} in this {label} inflates {ratio:,.0f}× "
        f"(limit {limits.max_ratio:g}×, knowledge.parsing.max_ratio): a decompression bomb? refused"
    )


def _declared(entries: list[zipfile.ZipInfo], label: str, limits: ParseLimits) -> None:
    limit = limits.max_inflated_mb * _MB
    total = sum(entry.file_size for entry in entries)
    if total > limit:
        raise _bomb(label, total, limits)
    for entry in entries:
        if entry.file_size > _RATIO_FLOOR:
            ratio = entry.file_size / max(entry.compress_size, 1)
            if ratio > limits.max_ratio:
                raise _ratio_error(label, entry.filename, ratio, limits)


def _actual(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], label: str, limits: ParseLimits
) -> None:
    limit = limits.max_inflated_mb * _MB
    total = 0
    for entry in entries:
        if entry.is_dir():
            continue
        size = 0
        try:
            with archive.open(entry) as member:
                head = member.read(64 * 1024)
                if entry.filename.lower().endswith(_IMAGES):
                    check_image(head, limits, f"{entry.filename} in this {label}")
                chunk = head
                while chunk:
                    size += len(chunk)
                    total += len(chunk)
                    if total > limit:
                        raise _bomb(label, total, limits, more="more than ")
                    if size > _RATIO_FLOOR and size > limits.max_ratio * entry.compress_size:
                        ratio = size / max(entry.compress_size, 1)
                        raise _ratio_error(label, entry.filename, ratio, limits)
                    chunk = member.read(_CHUNK)
        except (zipfile.BadZipFile, EOFError, NotImplementedError, RuntimeError) as error:
            # a wrong checksum or size (a tampered entry), an unsupported method, a password
            raise LoadError(
                f"文件损坏 / {entry.filename} in this {label} cannot be read: {error}"
            ) from error


def image_size(head: bytes) -> tuple[int, int] | None:
    """(width, height) from an image's header (PNG, GIF, BMP, JPEG), or None when unknown."""
    if head.startswith(b"\x89PNG\r\n\x1a\n") and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return width, height
    if head.startswith(b"GIF8") and len(head) >= 10:
        width, height = struct.unpack("<HH", head[6:10])
        return width, height
    if head.startswith(b"BM") and len(head) >= 26:
        width, height = struct.unpack("<ii", head[18:26])
        return abs(width), abs(height)
    if head.startswith(b"\xff\xd8"):
        return _jpeg_size(head)
    return None


def _jpeg_size(head: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 < len(head):
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            at += 2
            continue
        (length,) = struct.unpack(">H", head[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", head[at + 5 : at + 9])
            return width, height
        at += 2 + length
    return None


def check_image(head: bytes, limits: ParseLimits, what: str = "this image") -> None:
    """Refuse an image whose header declares more pixels than the limit (never decoded)."""
    size = image_size(head)
    if size is None:
        return
    width, height = size
    if width * height > limits.max_pixels:
        raise LoadError(
            f"图片过大 / {what} is {width:,}×{height:,} pixels "
            f"({width * height / 1e6:,.0f} megapixels; limit {limits.max_pixels / 1e6:g}, "
            "knowledge.parsing.max_pixels): refused"
        )


def check_pages(count: int, limits: ParseLimits) -> None:
    if count > limits.max_pages:
        raise LoadError(
            f"页数过多 / this PDF has {count:,} pages (limit {limits.max_pages:,}, "
            "knowledge.parsing.max_pages): refused (split it into smaller files)"
        )


class Cells:
    """Counts a sheet's cells as they are read; refuses past the limit."""

    def __init__(self, limits: ParseLimits) -> None:
        self.limit, self.count = limits.max_cells, 0

    def declared(self, rows: int | None, columns: int | None) -> None:
        """A sheet's declared dimension, checked before its rows are read."""
        self.add((rows or 0) * (columns or 0), declared=True)

    def add(self, count: int, *, declared: bool = False) -> None:
        total = self.count + count
        if total > self.limit:
            what = "declares" if declared else "has more than"
            raise LoadError(
                f"单元格过多 / this sheet {what} {total:,} cells (limit {self.limit:,}, "
                "knowledge.parsing.max_cells): refused"
            )
        if not declared:
            self.count = total
