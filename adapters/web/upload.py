"""The web chat's message body: today's JSON, or `multipart/form-data` with a `message` part
holding that JSON and one or more `file` parts. Each file stays in the request's spooled upload
(on disk past 1 MB) until the core reads it through its handle (`UploadFetch`)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import FormData, UploadFile

from adapters.web import body
from adapters.web.convert import ChatRequest
from engine.messages import Attachment, DownloadError

MAX_FILES = 20  # parts refused beyond this; the core reads `[attachments] max_files` of them
CHUNK = 1 << 16


class UploadFetch:
    """The attachment port over one uploaded part."""

    def __init__(self, upload: UploadFile) -> None:
        self._upload = upload

    async def __call__(self, limit: int) -> bytes:
        chunks: list[bytes] = []
        seen = 0
        try:
            await self._upload.seek(0)
            while chunk := await self._upload.read(CHUNK):
                seen += len(chunk)
                if seen > limit:
                    raise DownloadError(f"larger than {limit} bytes")
                chunks.append(chunk)
        except (OSError, ValueError) as error:  # the request ended and its files were closed
            raise DownloadError(f"the upload is no longer available ({error})") from error
        return b"".join(chunks)


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """A posted message, its files, and the form that holds them (closed after the answer)."""

    request: ChatRequest
    attachments: tuple[Attachment, ...] = ()
    form: FormData | None = None

    async def close(self) -> None:
        if self.form is not None:
            await self.form.close()


async def chat_message(request: Request, *, max_bytes: int, max_depth: int) -> ChatMessage:
    """The message and its uploaded files; a 4xx (HTTPException, RequestValidationError) saying
    what is wrong. The JSON message is checked for size and depth first, in either form."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        return ChatMessage(
            await body.read(request, ChatRequest, max_bytes=max_bytes, max_depth=max_depth)
        )
    form = await request.form(max_files=MAX_FILES, max_fields=10)
    try:
        return _multipart(form, max_bytes=max_bytes, max_depth=max_depth)
    except (RequestValidationError, HTTPException):
        await form.close()
        raise


def _multipart(form: FormData, *, max_bytes: int, max_depth: int) -> ChatMessage:
    part = form.get("message")
    if part is None or isinstance(part, UploadFile):
        raise RequestValidationError(
            [{"loc": ("body", "message"), "msg": "a text part holding the JSON message is required",
              "type": "missing"}]
        )  # fmt: skip
    files = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
    attachments = tuple(
        Attachment(
            kind="image" if (f.content_type or "").startswith("image/") else "file",
            name=f.filename or "",
            size=f.size or 0,
            mime=f.content_type or "",
            fetch=UploadFetch(f),
        )
        for f in files
    )
    data = part.encode()
    if len(data) > max_bytes:
        raise body.too_large(max_bytes)
    return ChatMessage(body.decode(data, ChatRequest, max_depth=max_depth), attachments, form)
