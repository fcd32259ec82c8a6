"""Files an operator uploads (the console): checked one by one, kept in the shared file store,
indexed as the source "uploads".

Each file is checked before anything changes: a supported type, under the size limit, and it
parses. A file that fails gets its own error and changes nothing; the others are kept in the
file store (knowledge/files: the database by default, or an S3-compatible object store) under
"uploads/" and indexed in one run of the source (which waits for any other change to it). The
store is the source's truth (kind `stored`), the same for every replica: any replica can list,
refresh (`teambot refresh uploads`) or remove them. Files an older version kept in
`knowledge.uploads_dir` are moved into the store at start (`adopt_folder`).
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
from knowledge.files import FileStoreError
from knowledge.loaders import KINDS, document_uri
from knowledge.parsing import parse_bytes
from knowledge.registry import UPLOADS_SOURCE
from knowledge.sources.stored import STORED
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


def uploads_folder(kb: KnowledgeBase) -> Path:
    """Where an older version kept uploads; its name is still the prefix of their keys and uris."""
    return Path(kb.settings.uploads_dir).expanduser().resolve()


def uploads_source(kb: KnowledgeBase) -> SourceSettings:
    return SourceSettings(
        name=UPLOADS_SOURCE,
        kind=STORED,
        location=uploads_folder(kb).name or UPLOADS_SOURCE,
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
    root = uploads_folder(kb)  # only for the uris: "<folder name>/<file name>"
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
    accepted = await _keep(kb, accepted, results)
    if accepted:
        registered = {s.name: s.kind for s in kb.sources}
        if kb.origin(UPLOADS_SOURCE) != "upload" or registered.get(UPLOADS_SOURCE) != STORED:
            await kb.add_source(source, origin="upload")
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


async def _keep(
    kb: KnowledgeBase,
    accepted: list[tuple[int, str, bytes, Document]],
    results: dict[int, UploadResult],
) -> list[tuple[int, str, bytes, Document]]:
    """Put each checked file into the file store; those it refused get their own error."""
    kept = []
    for index, name, data, document in accepted:
        try:
            await kb.files.put(document.uri, data)
        except FileStoreError as error:
            results[index] = UploadResult(name, False, f"无法保存 / cannot keep the file: {error}")
            continue
        kept.append((index, name, data, document))
    return kept


async def forget_file(kb: KnowledgeBase, uri: str) -> None:
    """Delete an uploaded document's file, so that a refresh does not bring it back."""
    if uri.startswith(uploads_source(kb).location + "/"):  # never another kind of file
        await kb.files.delete(uri)


async def forget_all(kb: KnowledgeBase) -> int:
    """Delete every uploaded file (the source was removed); how many there were."""
    prefix = uploads_source(kb).location + "/"
    removed = 0
    for kept in await kb.files.list(prefix):
        removed += await kb.files.delete(kept.key)
    return removed


async def adopt_folder(kb: KnowledgeBase) -> int:
    """Move what an older version kept in this replica's uploads folder into the file store
    (a file already there is left as it is) and switch the source to the store; how many
    files were moved. The folder itself is left alone: remove it once every replica moved
    its files."""
    folder = uploads_folder(kb)
    names = await asyncio.to_thread(_files_in, folder)
    source = uploads_source(kb)
    kept = {f.key for f in await kb.files.list(source.location + "/")}
    moved = 0
    for name in names:
        key = f"{source.location}/{name}"
        if key not in kept:
            await kb.files.put(key, await asyncio.to_thread((folder / name).read_bytes))
            moved += 1
    registered = {s.name: s.kind for s in kb.sources}
    if registered.get(UPLOADS_SOURCE, STORED) != STORED and kb.origin(UPLOADS_SOURCE) == "upload":
        await kb.add_source(source, origin="upload")
    if moved:
        log.info(
            "moved %d uploaded files from %s into the %s file store", moved, folder, kb.files.name
        )
    return moved


def _size(count: int) -> str:
    if count >= 1_048_576:
        return f"{count / 1_048_576:.1f} MB"
    return f"{count / 1024:.1f} KB"


def _files_in(folder: Path) -> list[str]:
    """The uploads an older version kept: supported files directly in the folder."""
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in KINDS
    )
