from __future__ import annotations

import math

import pytest

from knowledge import Embedder, EmbeddingModelError


async def test_embeddings_are_normalized_and_ordered(embedder: Embedder) -> None:
    vectors = await embedder.embed(["reset the VPN", "annual leave days", "reset the VPN"])

    assert len(vectors) == 3
    assert all(len(v) == embedder.dimension == 384 for v in vectors)
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0, rel_tol=1e-4) for v in vectors)
    assert vectors[0] == pytest.approx(vectors[2], abs=1e-5)
    assert await embedder.embed([]) == []


async def test_count_tokens_on_the_worker(embedder: Embedder) -> None:
    assert await embedder.run(embedder.count_tokens, "hello world") == 2
    assert await embedder.run(embedder.count_tokens, "") == 0


async def test_unloadable_model_names_the_model_and_the_fix() -> None:
    broken = Embedder("/nonexistent/teambot-model")
    try:
        with pytest.raises(EmbeddingModelError) as info:
            await broken.warmup()
    finally:
        await broken.close()
    message = str(info.value)
    assert "/nonexistent/teambot-model" in message
    assert "local folder" in message and "leave it empty" in message
