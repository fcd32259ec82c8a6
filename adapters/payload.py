"""JSON from outside, read within limits: size first, then a parse that cannot recurse past a
bound, then the nesting depth of what came out.

Every intake (Slack's HTTP events, Feishu's webhook and long connection, DingTalk's Stream
frames) reads untrusted JSON with `loads` before anything else touches it: Python's `json` (and
every SDK that uses it) raises `RecursionError` on a body nested ~1,000 deep, which escapes the
`ValueError` handlers around it and ends a request with a 500 or a read loop for good.
`PayloadError` is a `ValueError` whose message says which limit was passed.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MAX_BYTES", "MAX_DEPTH", "PayloadError", "depth", "loads"]

MAX_DEPTH = 64  # real events nest about 10 deep (Slack's Block Kit); 64 leaves room
MAX_BYTES = 1_048_576  # Slack and Feishu events are a few KB; DingTalk frames too


class PayloadError(ValueError):
    """The payload is over a limit or not JSON; the message says which."""


def depth(value: Any, limit: int = MAX_DEPTH) -> int:
    """How deep lists and objects nest in `value` (a scalar is 0), counted without recursion;
    stops counting at `limit + 1`."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        if level > deepest:
            deepest = level
            if deepest > limit:
                return deepest
        stack.extend((child, level) for child in children)
    return deepest


def loads(
    raw: str | bytes | bytearray,
    *,
    max_bytes: int = MAX_BYTES,
    max_depth: int = MAX_DEPTH,
    what: str = "body",
) -> Any:
    """`json.loads` that raises `PayloadError` (never RecursionError) for a payload over
    `max_bytes`, not JSON, or nested deeper than `max_depth`."""
    if len(raw) > max_bytes:
        raise PayloadError(f"{what} is {len(raw):,} bytes, over the limit of {max_bytes:,}")
    try:
        value = json.loads(raw)
    except RecursionError:
        raise PayloadError(f"{what} is JSON nested deeper than {max_depth} levels") from None
    except ValueError as error:  # JSONDecodeError, UnicodeDecodeError
        raise PayloadError(f"{what} is not JSON ({error})") from None
    if depth(value, max_depth) > max_depth:
        raise PayloadError(f"{what} is JSON nested deeper than {max_depth} levels")
    return value
