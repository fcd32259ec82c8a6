"""Parse untrusted bytes into a `Document`, off the event loop: the one entry point every source
kind, the console's uploads and attachments use, so that limits on what a file may cost apply
to all of them at once."""

from __future__ import annotations

import asyncio
from datetime import datetime

from knowledge.loaders import parse
from knowledge.types import Document

__all__ = ["parse_bytes"]


async def parse_bytes(
    data: bytes,
    kind: str,
    *,
    uri: str,
    name: str,
    suffix: str = "",
    modified_at: datetime | None = None,
    url: str = "",
) -> Document:
    """`knowledge.loaders.parse` in a worker; raises `LoadError` with the reason."""
    return await asyncio.to_thread(
        parse, data, kind, uri=uri, name=name, suffix=suffix, modified_at=modified_at, url=url
    )
