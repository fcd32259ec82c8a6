"""adapters.payload: JSON from outside is refused over its size or depth with the limit named,
and never raises RecursionError however deep it nests."""

from __future__ import annotations

import pytest

from adapters.payload import MAX_DEPTH, PayloadError, depth, loads


def nested(levels: int) -> str:
    return '{"a": ' * levels + "1" + "}" * levels


def test_real_events_pass_and_keep_their_values() -> None:
    body = '{"event": {"blocks": [{"elements": [{"elements": [{"text": "hi"}]}]}]}}'
    assert loads(body)["event"]["blocks"][0]["elements"][0]["elements"][0]["text"] == "hi"
    assert loads(nested(MAX_DEPTH)) is not None  # exactly at the limit


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 1_000, 100_000])
def test_deep_json_is_refused_by_its_depth(levels: int) -> None:
    with pytest.raises(PayloadError, match=f"frame is JSON nested deeper than {MAX_DEPTH}"):
        loads(nested(levels), what="frame", max_bytes=10_000_000)
    with pytest.raises(PayloadError, match="nested deeper"):
        loads(("[" * levels + "]" * levels).encode(), max_bytes=10_000_000)


def test_size_comes_first_and_garbage_is_not_json() -> None:
    with pytest.raises(PayloadError, match="2,000 bytes, over the limit of 1,000"):
        loads(b" " * 2000, max_bytes=1000)
    for garbage in (b"\xff\xfe{", "{", ""):
        with pytest.raises(PayloadError, match="body is not JSON"):
            loads(garbage)


def test_depth_counts_without_recursion() -> None:
    assert depth(1) == 0 and depth([]) == 1 and depth({"a": [1, {"b": []}]}) == 4
    value: list[object] = []
    for _ in range(50_000):
        value = [value]
    assert depth(value, limit=10) == 11  # stops counting past the limit
