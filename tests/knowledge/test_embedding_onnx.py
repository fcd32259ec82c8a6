"""The onnx backend against sentence-transformers itself: the same vectors, so an index built by
either stays valid; int8 is another model; passages batched by tokens on several threads come
back in order."""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import pytest

from knowledge import EmbeddingModelError, KnowledgeSettings
from knowledge.embedding import bundled_model_path, make_embedder
from knowledge.embedding.onnx import OnnxEmbedder
from knowledge.embedding.torch import TorchEmbedder

SENTENCES = [
    "How do I reset my VPN password?",
    "Expense reports must be submitted within 30 days.",
    "GC-401: wrong password or an expired password.",
    "  leading and trailing spaces are stripped  ",
    "年假有几天？",
    "报销需要在多少天内提交？",
    "如何重置 VPN 密码？Reset steps 1-5, 中英混合。",
    "x",
    # longer than the model's 256 tokens: both truncate the same way
    "The gateway is down for maintenance on Sundays between 02:00 and 04:00. " * 30,
    "公司密码每九十天过期一次，到期前十四天和三天会收到提醒邮件。" * 12,
]


@pytest.fixture(scope="module")
def embedder() -> Iterator[OnnxEmbedder]:
    """The bundled model in full precision (`embedding_int8 = false`): the configuration whose
    vectors are sentence-transformers' (the default, int8, is another model: tested below)."""
    model = OnnxEmbedder(int8=False)
    yield model
    asyncio.run(model.close())


@pytest.fixture(scope="module")
def reference() -> Iterator[np.ndarray]:
    """sentence-transformers' own vectors for SENTENCES (torch backend, the bundled model)."""
    torch = TorchEmbedder()
    yield np.array(torch._encode(SENTENCES))


async def test_onnx_vectors_match_sentence_transformers(
    embedder: OnnxEmbedder, reference: np.ndarray
) -> None:
    vectors = np.array(await embedder.embed(SENTENCES))
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() >= 0.999, dict(zip(SENTENCES, cosines.round(5).tolist(), strict=True))
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # an index built by torch stays valid: the same collection, no re-embed
    assert embedder.fingerprint == TorchEmbedder().fingerprint == ""


async def test_token_counts_and_readability_match_the_torch_backend(
    embedder: OnnxEmbedder,
) -> None:
    torch = TorchEmbedder(languages=["multi"])
    onnx = OnnxEmbedder(languages=["multi"])
    onnx._model = embedder._load()
    try:
        for text in SENTENCES:
            assert onnx.count_tokens(text) == torch.count_tokens(text), text
            assert onnx.readable(text) == pytest.approx(torch.readable(text)), text
    finally:
        await onnx.close()
        await torch.close()


async def test_batches_on_threads_come_back_in_order(
    embedder: OnnxEmbedder, reference: np.ndarray
) -> None:
    """Texts of very different lengths are sorted into token-sized batches and encoded on two
    threads; each vector still lands at its text's place."""
    threaded = OnnxEmbedder(threads=2, batch_size=3)
    try:
        texts = SENTENCES * 3
        vectors = np.array(await threaded.embed(texts))
    finally:
        await threaded.close()
    assert threaded._pool is not None
    expected = np.concatenate([reference] * 3)
    assert np.sum(vectors * expected, axis=1).min() >= 0.999


async def test_int8_is_another_model_close_to_the_original(
    tmp_path: Path, reference: np.ndarray
) -> None:
    """Each layer's feed-forward output stays fp32 (its input's outliers), the other products
    are 8-bit; a text's vector does not depend on the texts embedded with it."""
    settings = KnowledgeSettings(embedding_int8=True, embedding_cache_dir=str(tmp_path))
    int8 = make_embedder(settings)
    try:
        vectors = np.array(await int8.embed(SENTENCES))
        alone = np.array([int8._encode([text])[0] for text in SENTENCES])
    finally:
        await int8.close()
    assert int8.model_name.endswith("(int8)") and int8.fingerprint not in ("", None)
    (graph,) = [p for p in tmp_path.iterdir() if "int8" in p.name]  # beside the fp32 graph
    assert (graph / "model.onnx.data").is_file()  # weights ONNX Runtime maps, as for fp32
    model = onnx.load(str(graph / "model.onnx"), load_external_data=False)
    weights = {w.name: tuple(w.dims) for w in model.graph.initializer}
    full = [
        weights[n.input[1]]
        for n in model.graph.node
        if n.op_type == "MatMul" and n.input[1] in weights
    ]
    assert len(full) == 6 and all(rows > columns for rows, columns in full)
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 30
    assert np.allclose(vectors, alone, atol=1e-6)
    cosines = np.sum(vectors * reference, axis=1)
    assert cosines.min() > 0.99 and cosines.mean() < 0.9999  # close, not the same: a re-embed


async def test_the_graph_is_written_once_and_reused(tmp_path: Path) -> None:
    first = OnnxEmbedder(cache_dir=tmp_path)
    await first.warmup()
    (folder,) = tmp_path.iterdir()
    graph = folder / "model.onnx.data"  # the weights, mapped into memory by ONNX Runtime
    written = graph.stat().st_mtime_ns
    second = OnnxEmbedder(cache_dir=tmp_path)
    await second.warmup()
    await first.close()
    await second.close()
    assert list(tmp_path.iterdir()) == [folder] and graph.stat().st_mtime_ns == written


async def test_a_folder_with_its_own_onnx_graph_is_used_as_shipped(
    tmp_path: Path, embedder: OnnxEmbedder, reference: np.ndarray
) -> None:
    """A model folder with onnx/model.onnx (as Hugging Face ships many) needs no BERT writer:
    here a non-BERT config proves the shipped graph is the one that runs."""
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    await embedder.warmup()
    (written,) = [
        p
        for p in embedder._cache_dir.iterdir()
        if (p / "model.onnx").is_file() and "int8" not in p.name
    ][:1]
    shutil.copytree(written, folder / "onnx")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "xlm-roberta"}))
    shipped = OnnxEmbedder(str(folder), cache_dir=tmp_path / "cache")
    try:
        vectors = np.array(await shipped.embed(SENTENCES))
    finally:
        await shipped.close()
    assert not (tmp_path / "cache").exists()
    assert np.sum(vectors * reference, axis=1).min() >= 0.999


async def test_a_model_without_graph_that_is_not_bert_says_what_to_do(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "xlm-roberta"}))
    other = OnnxEmbedder(str(folder), cache_dir=tmp_path / "cache")
    try:
        with pytest.raises(EmbeddingModelError) as info:
            await other.warmup()
    finally:
        await other.close()
    message = str(info.value)
    assert "onnx/model.onnx" in message and "embedding_backend = 'torch'" in message


async def test_an_unwritable_model_cache_names_the_setting(tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    embedder = OnnxEmbedder(cache_dir=blocked / "models")
    try:
        with pytest.raises(EmbeddingModelError) as info:
            await embedder.warmup()
    finally:
        await embedder.close()
    assert "knowledge.embedding_cache_dir" in str(info.value)
