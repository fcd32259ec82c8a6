from __future__ import annotations

import asyncio
import math

import pytest

from knowledge import Embedder, EmbeddingModelError
from knowledge.embedding.onnx import OnnxEmbedder
from knowledge.embedding.torch import TorchEmbedder


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


@pytest.mark.parametrize("backend", [OnnxEmbedder, TorchEmbedder])
async def test_unloadable_model_names_the_model_and_the_fix(backend: type[Embedder]) -> None:
    broken = backend("/nonexistent/teambot-model")
    try:
        with pytest.raises(EmbeddingModelError) as info:
            await broken.warmup()
    finally:
        await broken.close()
    message = str(info.value)
    assert "/nonexistent/teambot-model" in message
    assert "local folder" in message and "leave it empty" in message


async def test_questions_asked_together_are_encoded_together(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    questions = [f"how many days of leave in year {i}?" for i in range(12)] + ["年假有几天？"]
    singles = [(await embedder.run(embedder.encode_queries, [q]))[0] for q in questions]
    batches: list[int] = []
    encode = embedder.encode_queries

    def counting(texts: list[str]) -> list[tuple[list[float], float]]:
        batches.append(len(texts))
        return encode(texts)

    monkeypatch.setattr(embedder, "encode_queries", counting)
    together = await asyncio.gather(*(embedder.embed_query(q) for q in questions))
    assert len(batches) < len(questions) and sum(batches) == len(questions)
    for (vector, readable), (alone, readable_alone) in zip(together, singles, strict=True):
        assert vector == pytest.approx(alone, abs=1e-4) and readable == readable_alone
    assert singles[-1][1] < 1.0  # the model reads most Chinese characters as [UNK]
    # asked again: remembered, not encoded again
    again = await asyncio.gather(*(embedder.embed_query(q) for q in questions))
    assert again == together and sum(batches) == len(questions)


async def test_a_failed_batch_fails_every_question_in_it(
    embedder: Embedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(texts: list[str]) -> list[tuple[list[float], float]]:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(embedder, "encode_queries", broken)
    results = await asyncio.gather(
        *(embedder.embed_query(f"q{i}") for i in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RuntimeError) for r in results)
    monkeypatch.undo()
    vector, _ = await embedder.embed_query("still works afterwards")
    assert len(vector) == 384


async def test_embedding_threads_bound_torch() -> None:
    """knowledge.embedding_threads (default 1) leaves the other cores to the event loop (the
    torch backend's threads are torch's own)."""
    import torch

    one = TorchEmbedder(threads=1)
    try:
        await one.warmup()
        # OpenMP's thread count is per calling thread: the worker's is the one that encodes
        assert await one.run(torch.get_num_threads) == 1
    finally:
        await one.close()


@pytest.mark.parametrize(
    ("model", "query", "passage", "reads_chinese"),
    [
        ("", "", "", False),  # the bundled all-MiniLM-L6-v2
        ("intfloat/multilingual-e5-small", "query: ", "passage: ", True),
        ("/models/e5-base-v2", "query: ", "passage: ", False),
        (
            "BAAI/bge-small-en-v1.5",
            "Represent this sentence for searching relevant passages: ",
            "",
            False,
        ),
        ("BAAI/bge-small-zh-v1.5", "为这个句子生成表示以用于检索相关文章：", "", True),
        ("BAAI/bge-m3", "", "", True),
        ("nomic-ai/nomic-embed-text-v1.5", "search_query: ", "search_document: ", False),
        ("sentence-transformers/paraphrase-multilingual-MiniLM-L12-v2", "", "", True),
        ("/models/our-own-model", "", "", True),  # unknown: its tokenizer decides
    ],
)
def test_prefixes_and_languages_are_known_by_family(
    model: str, query: str, passage: str, reads_chinese: bool
) -> None:
    from knowledge.families import profile

    known = profile(model)
    assert (known.query_prefix, known.passage_prefix) == (query, passage)
    assert known.reads("zh") is reads_chinese
    assert known.reads("en")


def test_configured_prefixes_and_languages_override_the_family() -> None:
    from knowledge.families import profile

    custom = profile(
        "intfloat/e5-small-v2", query_prefix="", passage_prefix="doc: ", languages=["multi"]
    )
    assert (custom.query_prefix, custom.passage_prefix) == ("", "doc: ")
    assert custom.reads("zh")


async def test_prefixes_reach_the_model(embedder: Embedder) -> None:
    assert isinstance(embedder, OnnxEmbedder)
    prefixed = OnnxEmbedder(query_prefix="query: ", passage_prefix="passage: ", int8=embedder._int8)
    prefixed._model = embedder._load()  # the same loaded model, other prefixes
    try:
        (passage,) = await prefixed.embed(["reset the VPN"])
        (raw,) = await embedder.embed(["passage: reset the VPN"])
        question, _ = await prefixed.embed_query("how to reset the VPN")
        (raw_question,) = await embedder.embed(["query: how to reset the VPN"])
    finally:
        await prefixed.close()
    assert passage == pytest.approx(raw, abs=1e-5)
    assert question == pytest.approx(raw_question, abs=1e-5)
    assert prefixed.fingerprint != embedder.fingerprint


async def test_readable_counts_unknown_wordpieces_and_declared_languages(
    embedder: Embedder,
) -> None:
    assert await embedder.run(embedder.readable, "reset the VPN") == 1.0
    assert await embedder.run(embedder.readable, "年假有几天") == 0.0  # not English
    assert isinstance(embedder, OnnxEmbedder)
    multilingual = OnnxEmbedder(languages=["multi"])
    multilingual._model = embedder._load()
    try:
        share = await multilingual.run(multilingual.readable, "年假有几天")
    finally:
        await multilingual.close()
    assert 0.0 < share < 1.0  # MiniLM's tokenizer knows some of these characters, not all
