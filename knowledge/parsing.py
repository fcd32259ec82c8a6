"""Parse untrusted bytes into a `Document`, off the event loop and out of the server's process:
the one entry point every source kind, the console's uploads and attachments use, so that the
limits on what a file may cost (`[knowledge.parsing]`, `knowledge.config.ParseLimits`) apply to
all of them at once.

A parse runs in a warm worker process (`knowledge.sandbox`) with a memory limit and a timeout,
after the checks of `knowledge.limits` (type against label, zip sizes and ratios, pages,
pixels, cells). One sandbox serves the process; `configure` sets its limits (the knowledge
base does, from its settings) and `close` stops its workers.
"""

from __future__ import annotations

import threading
from datetime import datetime
from pathlib import PurePath

from knowledge.config import ParseLimits
from knowledge.loaders import KINDS, parse
from knowledge.sandbox import Sandbox
from knowledge.types import Document

__all__ = ["close", "configure", "parse_bytes", "sandbox"]

_lock = threading.Lock()
_sandbox: Sandbox | None = None


def configure(limits: ParseLimits) -> Sandbox:
    """Use `limits` from now on; workers under other limits are stopped (calls in flight on
    them finish or fail as they would have)."""
    global _sandbox
    with _lock:
        old = _sandbox
        if old is not None and old.limits == limits:
            return old
        _sandbox = Sandbox(limits)
    if old is not None:
        old.close()
    return _sandbox


def sandbox() -> Sandbox:
    """The process's sandbox (default limits until `configure` is called)."""
    with _lock:
        current = _sandbox
    return current if current is not None else configure(ParseLimits())


def close() -> None:
    """Stop the workers (they start again on the next parse)."""
    global _sandbox
    with _lock:
        old, _sandbox = _sandbox, None
    if old is not None:
        old.close()


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
    """`knowledge.loaders.parse` in a worker process under the limits; raises `LoadError`
    with the reason (what was refused and which setting allows more)."""
    box = sandbox()
    return await box.run(
        parse,
        data,
        kind,
        uri=uri,
        name=name,
        suffix=suffix,
        modified_at=modified_at,
        url=url,
        limits=box.limits,
    )


async def parse_file(
    data: bytes, path: PurePath, *, uri: str, modified_at: datetime | None
) -> Document:
    """A file's bytes read as its suffix's kind (`knowledge.loaders.KINDS`), named by its stem:
    what a directory and the shared file store read alike."""
    suffix = path.suffix.lower()
    return await parse_bytes(
        data, KINDS[suffix], uri=uri, name=path.stem, suffix=suffix, modified_at=modified_at
    )
