"""Reading what people attach: each image or file is downloaded through its adapter's handle
(`Attachment.fetch`, with a size limit and a timeout), its type decided from the bytes
(`knowledge.sniff`), and read by `knowledge.parsing.parse_bytes` — the one sandboxed entry for
untrusted bytes, OCR included. What was read becomes the thread's own sources ("attached:
shot.png"), and what could not be read is named with the reason, in the asker's language.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.catalog import phrase
from engine.config import AttachmentSettings
from engine.messages import Attachment, DownloadError
from engine.store.records import Read
from knowledge import Passage
from knowledge.errors import LoadError
from knowledge.parsing import parse_bytes
from knowledge.sniff import sniff

log = logging.getLogger(__name__)

ATTACHED = "attached"  # the source name of an attachment's passages (and its citations)
# lines that say what went wrong lead the glimpse: an error code, "error", "failed" …
_ERRORISH = re.compile(
    r"\b[A-Z]{1,6}-?\d{3,}\b|error|fail|denied|unable|exception|错误|报错|失败|无法|拒绝|异常",
    re.IGNORECASE,
)
GLIMPSE_CHARS = 200
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*|[\u4e00-\u9fff]")


def _mb(size: int) -> str:
    return f"{size / 1_048_576:.1f} MB"


class AttachmentReader:
    """Reads a message's attachments, each in turn, within `[attachments]`' limits."""

    def __init__(self, settings: AttachmentSettings) -> None:
        self.settings = settings
        self._max_bytes = int(settings.max_mb * 1_048_576)
        self._keep_bytes = int(settings.keep_mb * 1_048_576)

    async def read_all(self, attachments: Sequence[Attachment], language: str) -> list[Read]:
        """Every attachment of a message, read or with its reason; none over `max_files`."""
        reads: list[Read] = []
        # what the platform gives no download for (a sticker, a voice note) is not named
        attachments = [a for a in attachments if a.fetch is not None]
        for index, attachment in enumerate(attachments):
            name = attachment.name or f"{attachment.kind}-{index + 1}"
            if index >= self.settings.max_files:
                why = phrase("attachment_too_many", language, limit=self.settings.max_files)
                reads.append(Read(name, attachment.kind, size=attachment.size, error=why))
                continue
            reads.append(await self.read(attachment, name, language))
        return reads

    async def read(self, attachment: Attachment, name: str, language: str) -> Read:
        unread = Read(name, attachment.kind, size=attachment.size)
        if not self.settings.enabled:
            return _failed(unread, phrase("attachment_off", language))
        if attachment.size > self._max_bytes:  # declared: not even downloaded
            return _failed(unread, self._too_large(attachment.size, language))
        if attachment.fetch is None:  # read_all leaves these out
            return _failed(unread, phrase("attachment_unavailable", language))
        try:
            async with asyncio.timeout(self.settings.download_timeout):
                data = await attachment.fetch(self._max_bytes)
        except TimeoutError:
            why = phrase("attachment_slow", language, seconds=f"{self.settings.download_timeout:g}")
            return _failed(unread, why)
        except DownloadError as error:
            if "larger than" in str(error) or "too large" in str(error):
                return _failed(
                    unread, self._too_large(attachment.size or self._max_bytes + 1, language)
                )
            log.warning("attachment %r not downloaded: %s", name, error)
            return _failed(unread, phrase("attachment_download", language, reason=str(error)))
        if len(data) > self._max_bytes:  # a handle that ignored its limit
            return _failed(unread, self._too_large(len(data), language))
        return await self._parse(name, data, language)

    async def _parse(self, name: str, data: bytes, language: str) -> Read:
        kept = data if len(data) <= self._keep_bytes else None
        try:
            found = await asyncio.to_thread(sniff, data, name)
        except LoadError as error:
            return Read(name, "file", size=len(data), error=_reason(str(error), language))
        read = Read(name, found.kind, found.mime, len(data), data=kept)
        try:
            async with asyncio.timeout(self.settings.read_timeout):
                document = await parse_bytes(
                    data, found.kind, uri=f"{ATTACHED}:{name}", name=name, suffix=found.suffix
                )
        except TimeoutError:
            why = phrase(
                "attachment_read_slow", language, seconds=f"{self.settings.read_timeout:g}"
            )
            return _failed(read, why)
        except LoadError as error:
            return _failed(read, _reason(str(error), language))
        text = document.text.replace("\f", "\n\n").strip()
        if not text:
            return _failed(read, _reason("no text found", language))
        return _with_text(read, text[: self.settings.max_chars])

    def _too_large(self, size: int, language: str) -> str:
        return phrase("attachment_too_large", language, size=_mb(size), limit=_mb(self._max_bytes))


def _failed(read: Read, error: str) -> Read:
    return Read(read.name, read.kind, read.mime, read.size, error=error, data=read.data)


def _with_text(read: Read, text: str) -> Read:
    return Read(read.name, read.kind, read.mime, read.size, text=text, data=read.data)


def _reason(detail: str, language: str) -> str:
    """A loader's reason (English, from knowledge) as the asker reads it: a known kind in their
    language, the detail beside it."""
    lowered = detail.lower()
    if "encrypted" in lowered or "password-protected" in lowered:
        key = "attachment_encrypted"
    elif "no text found" in lowered:
        key = "attachment_no_text"
    elif "unsupported" in lowered or "video" in lowered:
        key = "attachment_unsupported"
    elif "pixels" in lowered:
        key = "attachment_too_many_pixels"
    else:
        key = "attachment_damaged"
    return phrase(key, language, detail=detail)


def passages(reads: Sequence[Read], query: str, *, chars: int, per_file: int = 3) -> list[Passage]:
    """The attachments' text as sources to cite ("attached: NAME"): each split into pieces of
    at most `chars`, the `per_file` pieces that share most words with `query` (in their order)."""
    wanted = {w.lower() for w in _WORD.findall(query)}
    found: list[Passage] = []
    for read in reads:
        if not read.text:
            continue
        pieces = _pieces(read.text, chars)
        ranked = sorted(
            range(len(pieces)),
            key=lambda i: (-len(wanted & {w.lower() for w in _WORD.findall(pieces[i])}), i),
        )
        for index in sorted(ranked[:per_file]):
            found.append(
                Passage(
                    text=pieces[index],
                    title=f"{ATTACHED}: {read.name}",
                    source=ATTACHED,
                    location="",
                    section="",
                    score=1.0,
                    chunk_id=f"{ATTACHED}:{read.id or read.name}:{index}",
                )
            )
    return found


def _pieces(text: str, chars: int) -> list[str]:
    pieces: list[str] = []
    current = ""
    for paragraph in text.split("\n"):
        while len(paragraph) > chars:
            pieces.extend([current] if current else [])
            current = ""
            pieces.append(paragraph[:chars])
            paragraph = paragraph[chars:]
        if current and len(current) + len(paragraph) + 1 > chars:
            pieces.append(current)
            current = ""
        current = f"{current}\n{paragraph}" if current else paragraph
    if current.strip():
        pieces.append(current)
    return [p.strip() for p in pieces if p.strip()]


def search_text(reads: Sequence[Read], chars: int = 300) -> str:
    """What of the new attachments is searched beside the question: the lines that name an
    error (its code and message), else the first lines. Short on purpose: a whole screen of
    text matches every page a little and none well."""
    found = []
    for read in reads:
        lines = [" ".join(line.split()) for line in read.text.splitlines() if line.strip()]
        errors = [line for line in lines if _ERRORISH.search(line)]
        found.append(" ".join(errors[:5] or lines[:3])[:chars])
    return "\n".join(text for text in found if text)


def _glimpse(text: str) -> str:
    """The start of what was read, the lines that name an error first."""
    lines = [" ".join(line.split()) for line in text.splitlines() if line.strip()]
    ordered = [line for line in lines if _ERRORISH.search(line)]
    ordered += [line for line in lines if not _ERRORISH.search(line)]
    glimpse = " / ".join(ordered)
    return glimpse if len(glimpse) <= GLIMPSE_CHARS else glimpse[:GLIMPSE_CHARS].rstrip() + "…"


def seen(reads: Sequence[Read], language: str) -> str:
    """The reply's opening: what the bot read in each attachment, and what it could not read."""
    lines = []
    for read in reads:
        if read.text:
            glimpse = _glimpse(read.text)
            key = "attachment_seen_image" if read.image else "attachment_seen_file"
            lines.append(phrase(key, language, name=read.name, text=glimpse))
        else:
            lines.append(phrase("attachment_unread", language, name=read.name, reason=read.error))
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Attached:
    """A turn's attachments: those of this message, and those read earlier in the thread."""

    new: tuple[Read, ...] = ()
    earlier: tuple[Read, ...] = ()

    @property
    def read_any(self) -> bool:
        """Some attachment of this message was read."""
        return any(read.text for read in self.new)

    def sources(self, query: str, chars: int) -> list[Passage]:
        """Passages to cite: this message's attachments first, then the thread's earlier ones."""
        return passages((*self.new, *reversed(self.earlier)), query, chars=chars)

    def opening(self, language: str) -> str:
        return seen(self.new, language)
