"""The web chat's request bodies, checked before anything else reads them: size, then JSON
nesting depth (counted without parsing, so a body nested 100,000 deep never reaches a
recursive parser), then the JSON itself and its model. Anything wrong is a 4xx, never a 5xx."""

from __future__ import annotations

import asyncio
import json
import re
from itertools import accumulate
from typing import TypeVar

from fastapi import HTTPException, Request
from pydantic import BaseModel, ValidationError

from engine import clean
from engine.catalog import both

Model = TypeVar("Model", bound=BaseModel)

# Brackets inside strings do not nest. An unterminated string runs to the end, so the pattern
# never fails and backtracks: one pass over the body, whatever it holds.
_STRINGS = re.compile(rb'"(?:[^"\\]+|\\[\s\S])*(?:"|\\?\Z)')
_OPEN_CLOSE = bytes.maketrans(b"[{]}", b"\x01\x01\x02\x02")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_INLINE = 16_384  # bodies up to this size are checked on the loop (a few µs)


def depth(body: bytes) -> int:
    """How deep the JSON in `body` nests (its brackets outside strings)."""
    brackets = _STRINGS.sub(b"", body).translate(None, _NOT_BRACKETS).translate(_OPEN_CLOSE)
    steps = (1 if b == 1 else -1 for b in brackets)
    return max(accumulate(steps, initial=0))


async def read(request: Request, model: type[Model], *, max_bytes: int, max_depth: int) -> Model:
    """The body as `model`, or HTTPException 413 / 400 / 415 / 422 saying what is wrong."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    received = bytearray()
    async for part in request.stream():
        received += part
        if len(received) > max_bytes:
            raise too_large(max_bytes)
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise HTTPException(415, both("web_json_only"))
    return await decode_async(bytes(received), model, max_depth=max_depth)


async def decode_async(body: bytes, model: type[Model], *, max_depth: int) -> Model:
    """`decode`, with a large body's depth counted off the event loop."""
    # tens of ms for a body near the limit: off the event loop, which serves every other chat
    deep = await asyncio.to_thread(depth, body) if len(body) > _INLINE else depth(body)
    return _model(body, deep, model, max_depth)


def decode(body: bytes, model: type[Model], *, max_depth: int) -> Model:
    """JSON bytes (already within the size limit) as `model`; HTTPException 400 / 422."""
    return _model(body, depth(body), model, max_depth)


def _model(body: bytes, deep: int, model: type[Model], max_depth: int) -> Model:
    if deep > max_depth:
        raise HTTPException(400, both("web_json_too_deep", depth=max_depth))
    try:
        data = json.loads(body)
        return model.model_validate(data)
    except (ValueError, RecursionError) as error:  # ValidationError and JSONDecodeError are both
        if isinstance(error, ValidationError):
            raise HTTPException(422, _problems(error)) from None
        raise HTTPException(400, both("web_json_invalid")) from None


def too_large(max_bytes: int) -> HTTPException:
    return HTTPException(413, both("web_too_large", size=max_bytes))


def _problems(error: ValidationError) -> list[dict[str, object]]:
    """Where and why only: the input itself is never echoed back."""
    return [
        {
            "loc": [clean.text(part, 100) for part in e.get("loc", ())],
            "msg": clean.text(e.get("msg", ""), 300),
        }
        for e in error.errors()[:20]
    ]
