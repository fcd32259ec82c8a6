"""Files an operator uploads (the console): checked one by one, kept in a folder, indexed as the
source "uploads".

Each file is checked before anything changes: a supported type, under the size limit, and it
parses. A file that fails gets its own error and changes nothing; the others are written to
`knowledge.uploads_dir` and indexed in one run of the source (which waits for any other change
to it). The folder is the source's truth, so `teambot refresh uploads` re-reads it; it is never
pruned, so a replica without the folder cannot remove what another replica's upload added.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING

from knowledge.config import SourceSettings
from knowledge.errors import LoadError
from knowledge.loaders import KINDS, document_uri
from knowledge.parsing import parse_bytes
from knowledge.registry import UPLOADS_SOURCE
from knowledge.types import Document

if TYPE_CHECKING:
    from knowledge import KnowledgeBase

log = logging.getLogger(__name__)

SUPPORTED = "Markdown (.md), text (.txt), HTML, PDF, Word (.docx), FAQ sheets (.csv, .xlsx)"


@dataclass(frozen=True, slots=True)
class UploadResult:
    """What became of one uploaded file."""

    name: str
    ok: bool
    message: str
    chunks: int = 0
    uri: str = ""


def uploads_source(kb: KnowledgeBase) -> SourceSettings:
    folder = Path(kb.settings.uploads_dir).expanduser().resolve()
    return SourceSettings(
        name=UPLOADS_SOURCE,
        kind="directory",
        location=str(folder),
        collection=kb.settings.default_collection,
    )


def clean_name(name: str) -> str:
    """The file name alone (no folders from the browser), or "" when unusable."""
    base = PureWindowsPath(PurePosixPath(name).name).name.strip()
    return "" if not base or base.startswith(".") else base[:200]


async def check(name: str, data: bytes, root: Path, max_bytes: int) -> Document:
    """The parsed document (in the parser sandbox), or LoadError with a message for the
    operator."""
    suffix = Path(name).suffix.lower()
    if suffix not in KINDS:
        raise LoadError(
            f"不支持的文件类型 / unsupported file type {suffix or '(none)'}: upload {SUPPORTED}"
        )
    if len(data) > max_bytes:
        raise LoadError(
            f"文件过大 / too large: {_size(len(data))}, the limit is {_size(max_bytes)} "
            "(knowledge.upload_max_mb)"
        )
    try:
        document = await parse_bytes(
            data,
            KINDS[suffix],
            uri=document_uri(root / name, root),
            name=Path(name).stem,
            suffix=suffix,
            modified_at=datetime.now(UTC),
        )
    except LoadError as error:
        raise LoadError(f"无法解析 / cannot parse: {error}") from error
    if not document.text.strip():
        raise LoadError("没有可索引的文字 / no text to index (a scanned PDF?)")
    return document


async def upload(kb: KnowledgeBase, files: list[tuple[str, bytes]]) -> list[UploadResult]:
    """Check, keep and index uploaded files; one result per file, in order."""
    source = uploads_source(kb)
    root = Path(source.location)
    limit = int(kb.settings.upload_max_mb * 1_048_576)
    results: dict[int, UploadResult] = {}
    accepted: list[tuple[int, str, bytes, Document]] = []
    for index, (raw, data) in enumerate(files):
        name = clean_name(raw)
        if not name:
            results[index] = UploadResult(raw or "?", False, "文件名无效 / unusable file name")
            continue
        try:
            document = await check(name, data, root, limit)
        except LoadError as error:
            results[index] = UploadResult(name, False, str(error))
            continue
        accepted.append((index, name, data, document))
    if accepted:
        if kb.origin(UPLOADS_SOURCE) != "upload" or UPLOADS_SOURCE not in {
            s.name for s in kb.sources
        }:
            await kb.add_source(source, origin="upload")
        await asyncio.to_thread(_keep, root, [(n, d) for _, n, d, _ in accepted])
        report = await kb.ingestor.ingest_documents(
            [doc for *_, doc in accepted],
            source=UPLOADS_SOURCE,
            collection=source.collection,
            wait=True,
        )
        known = await kb.catalog.known(UPLOADS_SOURCE)
        for index, name, _, document in accepted:
            failure = report.failed.get(document.uri) or report.error
            if failure:
                results[index] = UploadResult(name, False, f"索引失败 / indexing failed: {failure}")
            else:
                chunks = len(known[document.uri].chunk_ids) if document.uri in known else 0
                message = f"已索引 / indexed: {chunks} chunks"
                results[index] = UploadResult(name, True, message, chunks, document.uri)
        log.info("console upload: %s", report.summary())
    return [results[i] for i in range(len(files))]


async def forget_file(kb: KnowledgeBase, uri: str) -> None:
    """Delete an uploaded document's file, so that a refresh does not bring it back."""
    root = Path(uploads_source(kb).location)
    name = clean_name(uri.split("/", 1)[-1])
    if name:
        await asyncio.to_thread(lambda: (root / name).unlink(missing_ok=True))


def _size(count: int) -> str:
    if count >= 1_048_576:
        return f"{count / 1_048_576:.1f} MB"
    return f"{count / 1024:.1f} KB"


def _keep(root: Path, files: list[tuple[str, bytes]]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, data in files:
        partial = root / f".{name}.part"
        partial.write_bytes(data)
        partial.replace(root / name)
