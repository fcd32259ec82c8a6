"""Load files into `Document`s: Markdown, text, HTML, PDF, Word .docx and FAQ sheets (CSV/XLSX).

Everything here is blocking IO and parsing of untrusted bytes: call it through
`knowledge.parsing.parse_bytes` (a worker process under memory and time limits), never on the
event loop. `parse` checks what a file may cost (`knowledge.limits`) before and while parsing.
HTML and .docx become Markdown (their headings become section paths); PDF keeps one page per
form feed (pages without a text layer read by OCR, knowledge/ocr.py, as
are images: kind "image"); an FAQ sheet becomes one `## question` section per row.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

from knowledge import ocr
from knowledge.chunking import markdown_title
from knowledge.config import ParseLimits
from knowledge.errors import LoadError
from knowledge.limits import Cells, check_bytes, check_pages
from knowledge.types import Document

__all__ = ["KINDS", "LoadError", "decode", "document_uri", "list_files", "load_file", "parse"]

KINDS = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".docx": "docx",
    ".csv": "faq",
    ".xlsx": "faq",
}
# utf-8-sig only strips a BOM; gb18030 covers GBK/GB2312 files saved by Chinese Windows tools.
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")
QUESTION_HEADERS = {"question", "q", "问题", "问", "提问", "常见问题"}
ANSWER_HEADERS = {"answer", "a", "答案", "答", "回答", "解答"}


def document_uri(path: Path, root: Path) -> str:
    """A stable, readable id: the root folder's name joined with the path inside it."""
    if path == root:
        return f"{root.parent.name}/{root.name}" if root.parent.name else root.name
    return f"{root.name}/{path.relative_to(root).as_posix()}"


def selected(relative: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """Whether a relative path (or URL) passes the include/exclude globs."""
    if any(fnmatch(relative, pattern) for pattern in exclude):
        return False
    return not include or any(fnmatch(relative, pattern) for pattern in include)


def list_files(root: Path, include: Sequence[str] = (), exclude: Sequence[str] = ()) -> list[Path]:
    """Supported files under `root` (or `root` itself), sorted, skipping hidden files and dirs."""
    if root.is_file():
        return [root] if root.suffix.lower() in KINDS else []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if (
                name.startswith(".")
                or name.startswith("~$")
                or Path(name).suffix.lower() not in KINDS
            ):
                continue
            path = Path(dirpath) / name
            if selected(path.relative_to(root).as_posix(), include, exclude):
                found.append(path)
    return sorted(found)


def decode(data: bytes) -> str:
    """Decode bytes as UTF-8, else GB18030; raise `LoadError` for binary or unknown encodings."""
    if b"\x00" in data:
        raise LoadError("binary file (contains NUL bytes)")
    for encoding in ENCODINGS:
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    raise LoadError(f"cannot decode as {', '.join(ENCODINGS)}")


def load_file(path: Path, root: Path) -> Document:
    """Read one file into a `Document`; raise `LoadError` when it cannot be read or parsed."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc
    return parse(
        data,
        KINDS[path.suffix.lower()],
        uri=document_uri(path, root),
        name=path.stem,
        suffix=path.suffix.lower(),
        modified_at=datetime.fromtimestamp(mtime, tz=UTC),
    )


def parse(
    data: bytes,
    kind: str,
    *,
    uri: str,
    name: str,
    suffix: str = "",
    modified_at: datetime | None = None,
    url: str = "",
    limits: ParseLimits | None = None,
) -> Document:
    """Parse bytes of a known kind; `name` is the fallback title. Raises `LoadError`."""
    limits = limits or ParseLimits()
    try:
        check_bytes(data, kind, suffix, limits)
        if kind in ("markdown", "text"):
            text = decode(data)
            title = (markdown_title(text) if kind == "markdown" else None) or name
        elif kind == "html":
            text, found = html_to_markdown(decode(data))
            title, kind = found or markdown_title(text) or name, "markdown"
        elif kind == "pdf":
            text, found = _pdf(data, limits)
            title = found or name
        elif kind == "docx":
            text, found = _docx(data)
            title, kind = found or markdown_title(text) or name, "markdown"
        elif kind == "faq":
            cells = Cells(limits)
            rows = _xlsx_rows(data, cells) if suffix == ".xlsx" else _csv_rows(decode(data), cells)
            text, title = faq_markdown(rows), name
        elif kind == "image":
            text, title = ocr.image_text(data), name
        else:
            raise LoadError(f"unsupported kind {kind!r}")
    except (LoadError, MemoryError):
        raise  # the sandbox reports a MemoryError as the memory limit, in words
    except Exception as exc:  # a parser's own error (corrupt PDF, bad zip): report, don't stop
        raise LoadError(f"cannot parse as {kind}: {type(exc).__name__}: {exc}") from exc
    if not text.strip():
        raise LoadError(f"no text found in this {kind} file")
    return Document(uri=uri, title=title, text=text, kind=kind, modified_at=modified_at, url=url)


def html_to_markdown(html: str) -> tuple[str, str | None]:
    """The main text of a page as Markdown (navigation, footers dropped), and its title."""
    import trafilatura

    text = trafilatura.extract(
        html,
        output_format="markdown",
        include_formatting=True,
        include_tables=True,
        include_links=False,
        include_comments=False,
        favor_recall=True,
    )
    metadata = trafilatura.extract_metadata(html)
    title = metadata.title if metadata is not None and metadata.title else None
    return (text or "").strip() + "\n", title


def _pdf(data: bytes, limits: ParseLimits) -> tuple[str, str | None]:
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")  # "encrypted" with an empty password: readable
        except Exception as error:  # pypdf's errors, or a cipher it cannot load
            opened = None
            reason = f" ({error})"
        else:
            reason = ""
        if not opened:
            raise LoadError(
                f"PDF 已加密 / this PDF is password-protected{reason}: save a copy without a "
                "password (or print it to PDF) and add that"
            )
    tree = reader.root_object["/Pages"].get_object()
    declared = tree.get("/Count", 0) if isinstance(tree, dict) else 0
    check_pages(int(declared) if isinstance(declared, int) else 0, limits)
    pages: list[str] = []
    for page in reader.pages:
        check_pages(len(pages) + 1, limits)  # the declared count may lie
        pages.append((page.extract_text() or "").strip())
    pages = ocr.pdf_scanned_pages(data, pages)
    title = reader.metadata.title if reader.metadata and reader.metadata.title else None
    return "\f".join(pages), title


def _docx(data: bytes) -> tuple[str, str | None]:
    import docx

    document = docx.Document(io.BytesIO(data))
    lines: list[str] = []
    for paragraph in document.paragraphs:
        text = paragraph.text.strip()
        if not text:
            continue
        style = (paragraph.style.name if paragraph.style is not None else "") or ""
        if style == "Title":
            lines.append(f"# {text}")
        elif style.startswith("Heading") and style[7:].strip().isdigit():
            level = min(int(style[7:].strip()), 6)
            lines.append(f"{'#' * level} {text}")
        elif style.startswith("List"):
            lines.append(f"- {text}")
        else:
            lines.append(text)
        lines.append("")
    for table in document.tables:
        for row in table.rows:
            lines.append("| " + " | ".join(cell.text.strip() for cell in row.cells) + " |")
        lines.append("")
    title = document.core_properties.title or None
    return "\n".join(lines), title


def _csv_rows(text: str, cells: Cells) -> list[list[str]]:
    try:
        dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(text[:4096], ",;\t")
    except csv.Error:
        dialect = csv.excel
    rows: list[list[str]] = []
    for row in csv.reader(io.StringIO(text), dialect):
        cells.add(len(row))
        rows.append(row)
    return rows


def _xlsx_rows(data: bytes, cells: Cells) -> list[list[str]]:
    from openpyxl import load_workbook

    book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        rows: list[list[str]] = []
        for sheet in book.worksheets:
            cells.declared(sheet.max_row, sheet.max_column)
            for values in sheet.iter_rows(values_only=True):
                cells.add(len(values))
                rows.append(["" if v is None else str(v) for v in values])
        return rows
    finally:
        book.close()


def faq_pairs(rows: Sequence[Sequence[str]]) -> list[tuple[str, str]]:
    """Question-answer pairs: columns named question/answer (or 问题/答案), else the first two."""
    rows = [[cell.strip() for cell in row] for row in rows if any(c.strip() for c in row)]
    if not rows:
        return []
    header = [cell.lower() for cell in rows[0]]
    q = next((i for i, h in enumerate(header) if h in QUESTION_HEADERS), None)
    a = next((i for i, h in enumerate(header) if h in ANSWER_HEADERS), None)
    if q is not None and a is not None:
        rows = rows[1:]
    else:
        q, a = 0, 1
    pairs = []
    for row in rows:
        if len(row) > max(q, a) and row[q] and row[a]:
            pairs.append((" ".join(row[q].split()), row[a]))
    if not pairs:
        raise LoadError("no question/answer rows found (want two columns: question, answer)")
    return pairs


def faq_markdown(rows: Sequence[Sequence[str]]) -> str:
    """One `## question` section per pair (the chunker makes each pair one chunk)."""
    return "".join(f"## {q}\n\n{a}\n\n" for q, a in faq_pairs(rows))


def load_folder(root: Path) -> tuple[list[Document], dict[str, str]]:
    """Load every supported file under `root`: (documents, failures as uri -> error)."""
    documents: list[Document] = []
    failed: dict[str, str] = {}
    for path in list_files(root):
        try:
            documents.append(load_file(path, root))
        except LoadError as exc:
            failed[document_uri(path, root)] = str(exc)
    return documents, failed
