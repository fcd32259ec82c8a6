"""Load Markdown and plain-text files into `Document`s.

Everything here is blocking file IO: call it from a worker thread (`asyncio.to_thread`), never
on the event loop.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from knowledge.chunking import markdown_title
from knowledge.types import Document

KINDS = {".md": "markdown", ".markdown": "markdown", ".txt": "text"}
# utf-8-sig only strips a BOM; gb18030 covers GBK/GB2312 files saved by Chinese Windows tools.
ENCODINGS = ("utf-8", "utf-8-sig", "gb18030")


class LoadError(Exception):
    """A file that could not be read or decoded; the message says why."""


def document_uri(path: Path, root: Path) -> str:
    """A stable, readable id: the root folder's name joined with the path inside it."""
    if path == root:
        return f"{root.parent.name}/{root.name}" if root.parent.name else root.name
    return f"{root.name}/{path.relative_to(root).as_posix()}"


def list_files(root: Path) -> list[Path]:
    """Supported files under `root` (or `root` itself), sorted, skipping hidden files and dirs."""
    if root.is_file():
        return [root] if root.suffix.lower() in KINDS else []
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            if not name.startswith(".") and Path(name).suffix.lower() in KINDS:
                found.append(Path(dirpath) / name)
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
        return text.removeprefix("\ufeff")
    raise LoadError(f"cannot decode as {', '.join(ENCODINGS)}")


def load_file(path: Path, root: Path) -> Document:
    """Read one file into a `Document`; raise `LoadError` when it cannot be read or decoded."""
    try:
        data = path.read_bytes()
        mtime = path.stat().st_mtime
    except OSError as exc:
        raise LoadError(exc.strerror or str(exc)) from exc
    text = decode(data).replace("\r\n", "\n").replace("\r", "\n")
    kind = KINDS[path.suffix.lower()]
    title = (markdown_title(text) if kind == "markdown" else None) or path.stem
    return Document(
        uri=document_uri(path, root),
        title=title,
        text=text,
        kind=kind,
        modified_at=datetime.fromtimestamp(mtime, tz=UTC),
    )


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
