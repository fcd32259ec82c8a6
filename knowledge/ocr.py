"""Text from pictures, on CPU and offline: screenshots and photos, and the pages of a PDF that
have no text layer (scans), read with RapidOCR's PP-OCR models (Chinese and English, shipped
inside the `rapidocr` wheel, run by onnxruntime: nothing is downloaded at run time).

Called from `knowledge.loaders.parse` (kind "image", and PDF pages without text), so it runs
inside `knowledge.parsing.parse_bytes` like every other parser of untrusted bytes, under the
same limits. Blocking: never call it on the event loop.
"""

from __future__ import annotations

import io
import os
import re
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from knowledge.errors import LoadError

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = ["MAX_PIXELS", "OCR_PAGES", "image_text", "pdf_scanned_pages"]

MAX_PIXELS = 40_000_000  # a 30000×30000 "image" is refused before it is decoded
OCR_PAGES = 20  # at most this many text-less PDF pages are rendered and read
PAGE_SCALE = 2.0  # 144 dpi: small print in scans stays readable
DETECT_SIDE = 960
# the recogniser puts a space after a hyphen between letters and digits: "TX- 7781"
_CODE_GAP = re.compile(r"\b([A-Za-z]{1,10})- (\d)")
_CJK_GAP = re.compile(r"(?<=[\u3000-\u9fff\uff00-\uffef]) (?=[\u3000-\u9fff\uff00-\uffef])")
_engine: Any = None
_lock = threading.Lock()


def _ocr() -> Any:
    """One RapidOCR engine per process (the models load once, ~0.5 s)."""
    global _engine
    with _lock:
        if _engine is None:
            from rapidocr import RapidOCR

            threads = int(os.environ.get("TEAMBOT_OCR_THREADS", "1") or 1)
            _engine = RapidOCR(
                params={
                    "Global.log_level": "warning",
                    "Global.use_cls": False,  # screenshots are upright; saves a model pass
                    # text is searched for on the picture scaled to 960 px on its long side:
                    # a 1280×800 screenshot reads in ~1.2 s of one core instead of ~2 s, with
                    # the same characters (tests/perf/test_attachment_bench.py)
                    "Det.limit_type": "max",
                    "Det.limit_side_len": DETECT_SIDE,
                    "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                    "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                }
            )
        return _engine


def image_text(data: bytes) -> str:
    """The text in an image, line by line, top to bottom; raises `LoadError` for an image
    that is too large, damaged or not an image."""
    from PIL import Image as PILImage
    from PIL import ImageOps, UnidentifiedImageError

    try:
        with PILImage.open(io.BytesIO(data)) as opened:
            width, height = opened.size  # read from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise LoadError(
                    f"the image is {width}×{height} pixels; at most {MAX_PIXELS // 1_000_000} "
                    "million pixels are read: send a smaller screenshot"
                )
            opened.seek(0)  # the first frame of a GIF or TIFF
            image = ImageOps.exif_transpose(opened).convert("RGB")
    except LoadError:
        raise
    except PILImage.DecompressionBombError as exc:  # Pillow's own, far larger ceiling
        raise LoadError(
            f"the image has far more than {MAX_PIXELS // 1_000_000} million pixels ({exc}): "
            "send a smaller screenshot"
        ) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise LoadError(f"a damaged or truncated image ({exc})") from exc
    return read_picture(image)


def read_picture(image: Image) -> str:
    """OCR of a decoded picture: its lines joined, boxes on one row joined by a space."""
    result = _ocr()(image)
    if result.boxes is None or result.txts is None:
        return ""
    return _lines(result.boxes, result.txts)


def _lines(boxes: Any, texts: Sequence[str]) -> str:
    rows: list[tuple[float, float, list[tuple[float, str]]]] = []  # (center y, height, words)
    for box, text in zip(boxes, texts, strict=False):
        ys = [float(point[1]) for point in box]
        x = min(float(point[0]) for point in box)
        top, bottom = min(ys), max(ys)
        center, height = (top + bottom) / 2, bottom - top
        for row_center, row_height, words in rows:
            if abs(center - row_center) < max(height, row_height) / 2:
                words.append((x, text))
                break
        else:
            rows.append((center, height, [(x, text)]))
    rows.sort(key=lambda row: row[0])
    lines = (" ".join(t for _, t in sorted(words)) for _, _, words in rows)
    return "\n".join(_CJK_GAP.sub("", _CODE_GAP.sub(r"\1-\2", line)) for line in lines)


def pdf_scanned_pages(data: bytes, pages: list[str]) -> list[str]:
    """`pages` (the text layer of each page) with the text-less ones read by OCR: rendered with
    pdfium, at most `OCR_PAGES` of them; later ones stay empty and are said to be skipped."""
    blank = [i for i, text in enumerate(pages) if not text.strip()]
    if not blank:
        return pages
    import pypdfium2 as pdfium

    read = list(pages)
    pdf = pdfium.PdfDocument(data)
    try:
        for index in blank[:OCR_PAGES]:
            page = pdf[index]
            try:
                width, height = page.get_size()
                scale = min(PAGE_SCALE, (MAX_PIXELS / max(width * height, 1.0)) ** 0.5)
                bitmap = page.render(scale=scale)
                read[index] = read_picture(bitmap.to_pil().convert("RGB"))
            finally:
                page.close()
    finally:
        pdf.close()
    if len(blank) > OCR_PAGES:
        skipped = len(blank) - OCR_PAGES
        read[-1] = (
            f"{read[-1]}\n\n({skipped} more scanned pages were not read: at most {OCR_PAGES})"
        )
    return read
