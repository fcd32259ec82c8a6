"""On a Chroma server, a read that cannot reach it (a restart) is tried again for a few seconds;
the embedded store raises at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from knowledge.vectors import VectorStore


class Restarting:
    """A chromadb client and collection whose server refuses the first `down` calls."""

    def __init__(self, down: int) -> None:
        self.down, self.calls = down, 0

    def get_max_batch_size(self) -> int:
        return 100

    def get(self, **_: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.down:
            raise httpx.ConnectError("[Errno 111] Connection refused")
        return {"ids": ["c1"], "documents": ["Annual leave: 20 days."], "metadatas": [{}]}


async def test_a_read_waits_out_a_chroma_server_restart() -> None:
    server = Restarting(down=2)
    store = VectorStore(server, server, remote=True)
    store._retries = (0.0, 0.0, 0.0)  # the real pauses add up to ~10 s
    found = await store.get(["c1"])
    assert found["c1"].text == "Annual leave: 20 days." and server.calls == 3


async def test_a_server_down_for_longer_still_fails_and_the_embedded_store_at_once() -> None:
    server = Restarting(down=10)
    store = VectorStore(server, server, remote=True)
    store._retries = (0.0, 0.0)
    with pytest.raises(httpx.ConnectError):
        await store.get(["c1"])
    assert server.calls == 3
    embedded = Restarting(down=1)
    with pytest.raises(httpx.ConnectError):
        await VectorStore(embedded, embedded).get(["c1"])
    assert embedded.calls == 1
