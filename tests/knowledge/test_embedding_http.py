"""The OpenAI-compatible embeddings backend against a fake server over real HTTP."""

from __future__ import annotations

import math
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from knowledge import KnowledgeBase, KnowledgeSettings
from knowledge.embedding import make_embedder
from knowledge.embedding.http import EmbeddingServerError, HttpEmbedder
from tests.fakes.embeddings import DIMENSION, FakeEmbeddings, fake_vector


@pytest.fixture
def fake() -> Iterator[FakeEmbeddings]:
    with FakeEmbeddings() as server:
        yield server


@pytest.fixture
async def remote(fake: FakeEmbeddings) -> AsyncIterator[HttpEmbedder]:
    embedder = HttpEmbedder(
        "multilingual-e5-small", url=fake.url, batch_size=4, timeout=2.0, retries=2
    )
    yield embedder
    await embedder.close()


async def test_passages_go_in_batches_with_the_family_prefix(
    fake: FakeEmbeddings, remote: HttpEmbedder
) -> None:
    texts = [f"passage number {i}" for i in range(10)]
    vectors = await remote.embed(texts)

    assert [len(r.inputs) for r in fake.requests] == [4, 4, 2]
    sent = [t for r in fake.requests for t in r.inputs]
    assert sent == [f"passage: {t}" for t in texts]  # e5's passage prefix, known by family
    assert vectors[3] == pytest.approx(fake_vector(f"passage: {texts[3]}"))
    assert all(math.isclose(math.fsum(x * x for x in v), 1.0) for v in vectors)
    assert remote.dimension == DIMENSION


async def test_questions_carry_the_query_prefix_and_are_remembered(
    fake: FakeEmbeddings, remote: HttpEmbedder
) -> None:
    vector, readable = await remote.embed_query("年假有几天")
    again, _ = await remote.embed_query("年假有几天")

    assert [r.inputs for r in fake.requests] == [("query: 年假有几天",)]
    assert vector == again == pytest.approx(fake_vector("query: 年假有几天"))
    assert readable == 1.0  # multilingual-e5 declares Chinese


async def test_configured_prefixes_and_input_type_win(fake: FakeEmbeddings) -> None:
    settings = KnowledgeSettings(
        embedding_backend="http",
        embedding_url=fake.url,
        embedding_model="multilingual-e5-small-q4",
        embedding_query_prefix="",
        embedding_passage_prefix="",
        embedding_input_type=True,
    )
    embedder = make_embedder(settings)
    try:
        assert isinstance(embedder, HttpEmbedder)
        await embedder.embed(["报销流程"])
        await embedder.embed_query("报销要多久")
    finally:
        await embedder.close()
    assert [(r.inputs, r.input_type) for r in fake.requests] == [
        (("报销流程",), "passage"),
        (("报销要多久",), "query"),
    ]


async def test_an_english_model_is_not_trusted_with_chinese(fake: FakeEmbeddings) -> None:
    embedder = HttpEmbedder("bge-small-en-v1.5", url=fake.url)
    try:
        _, chinese = await embedder.embed_query("年假有几天")
        _, english = await embedder.embed_query("how many days of leave")
    finally:
        await embedder.close()
    assert (chinese, english) == (0.0, 1.0)
    assert fake.requests[1].inputs[0].startswith("Represent this sentence")  # bge's instruction


async def test_server_errors_are_retried_then_succeed(
    fake: FakeEmbeddings, remote: HttpEmbedder
) -> None:
    fake.behave(fail=2, status=503)
    vectors = await remote.embed(["first try fails twice"])

    assert len(fake.requests) == 3 and len(vectors) == 1


async def test_a_timeout_fails_with_the_url_and_the_fix(fake: FakeEmbeddings) -> None:
    fake.behave(delay=1.0)
    embedder = HttpEmbedder("fake-multilingual", url=fake.url, timeout=0.2, retries=1)
    try:
        with pytest.raises(EmbeddingServerError) as info:
            await embedder.embed(["slow"])
    finally:
        await embedder.close()
    message = str(info.value)
    assert "no answer within 0.2 s" in message and fake.url in message
    assert "knowledge.embedding_url" in message
    assert len(fake.requests) == 2  # the first try and one retry


async def test_a_client_error_is_not_retried(fake: FakeEmbeddings, remote: HttpEmbedder) -> None:
    fake.behave(fail=5, status=400)
    with pytest.raises(EmbeddingServerError, match=r"HTTP 400: .*fake failure"):
        await remote.embed(["bad request"])
    assert len(fake.requests) == 1


async def test_the_api_key_is_sent(fake: FakeEmbeddings) -> None:
    fake.behave(api_key="sk-embed")
    without = HttpEmbedder("m", url=fake.url, retries=0)
    with_key = HttpEmbedder("m", url=fake.url, api_key="sk-embed", retries=0)
    try:
        with pytest.raises(EmbeddingServerError, match="HTTP 401"):
            await without.warmup()
        await with_key.warmup()
    finally:
        await without.close()
        await with_key.close()


async def test_an_unreachable_server_says_so() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    embedder = HttpEmbedder("m", url=f"http://127.0.0.1:{port}/v1", retries=0)
    try:
        with pytest.raises(EmbeddingServerError, match="cannot connect"):
            await embedder.warmup()
    finally:
        await embedder.close()


def test_the_http_backend_needs_a_url_and_a_model() -> None:
    with pytest.raises(ValueError, match="embedding_url"):
        KnowledgeSettings(embedding_backend="http", embedding_model="m")


async def test_retrieval_answers_from_bm25_while_the_server_is_down(
    fake: FakeEmbeddings, tmp_path: Path, handbook: Path
) -> None:
    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma",
        collection="http-kb",
        embedding_backend="http",
        embedding_url=fake.url,
        embedding_model="fake-multilingual",
        embedding_retries=0,
    )
    kb = await KnowledgeBase.open(settings)
    try:
        report = await kb.ingestor.ingest_path(handbook, source="handbook")
        assert report.result == "ok" and report.embedded == report.chunks > 0
        up = await kb.retriever.retrieve("How do I reset my VPN?")
        assert up[0].location == "handbook/vpn.md"

        fake.behave(down=True)
        down = await kb.retriever.retrieve("How do I reset my VPN profile?")
        assert down and down[0].location == "handbook/vpn.md"
        with pytest.raises(EmbeddingServerError):
            await kb.retriever.retrieve("How do I reset my VPN profile?", mode="dense")
    finally:
        await kb.close()
