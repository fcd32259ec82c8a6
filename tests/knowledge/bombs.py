"""Hostile documents built in the tests: zip bombs, a huge image header, an encrypted PDF."""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib

from tests.knowledge import files

_MB = 1_048_576


def docx_bomb(inflated_mb: int, padding_kb: int = 0) -> bytes:
    """A real .docx whose word/document.xml inflates to `inflated_mb` (a comment of spaces,
    written in chunks so the test never holds it); `padding_kb` of random bytes make the file
    itself larger (the issue's bomb was ~1 MB on disk)."""
    good = zipfile.ZipFile(io.BytesIO(files.docx("Bomb", [("Part", "text")])))
    document = good.read("word/document.xml")
    head, tail = document.split(b"<w:body>", 1)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bomb:
        for entry in good.infolist():
            if entry.filename != "word/document.xml":
                bomb.writestr(entry, good.read(entry))
        with bomb.open("word/document.xml", "w", force_zip64=True) as member:
            member.write(head + b"<w:body><!--")
            chunk = b" " * _MB
            for _ in range(inflated_mb):
                member.write(chunk)
            member.write(b"-->" + tail)
        if padding_kb:
            bomb.writestr(
                zipfile.ZipInfo("word/media/padding.bin"),
                os.urandom(padding_kb * 1024),
                compress_type=zipfile.ZIP_STORED,
            )
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG's signature and IHDR chunk (enough for any reader to learn its size)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    idat = zlib.compress(b"\x00" * 64)
    idat_chunk = struct.pack(">I", len(idat)) + b"IDAT" + idat
    idat_chunk += struct.pack(">I", zlib.crc32(b"IDAT" + idat))
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + b"IHDR" + ihdr + crc + idat_chunk


def docx_with_image(image: bytes) -> bytes:
    """A good .docx that also carries `image` as word/media/image1.png."""
    source = zipfile.ZipFile(io.BytesIO(files.docx("Pictures", [("Part", "text")])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for entry in source.infolist():
            target.writestr(entry, source.read(entry))
        target.writestr("word/media/image1.png", image)
    return out.getvalue()


def encrypted_pdf(password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(files.pdf(["Payroll dates"]))).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()
