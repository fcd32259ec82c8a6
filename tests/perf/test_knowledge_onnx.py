"""ONNX (and int8) against PyTorch for the embedding model: speed and retrieval quality.

sentence-transformers' ONNX backend needs `optimum[onnxruntime]`, which today pins
transformers < 4.58 while sentence-transformers 6 wants transformers >= 5: it cannot live in
teambot's environment. Run this in a side environment that layers optimum over ours:

    python -m venv /tmp/onnxenv
    echo "$PWD/.venv/lib/python3.11/site-packages" > /tmp/onnxenv/lib/python3.11/site-packages/zz.pth
    /tmp/onnxenv/bin/pip install "optimum[onnxruntime]"
    PYTHONPATH=$PWD /tmp/onnxenv/bin/python -m pytest tests/perf/test_knowledge_onnx.py -s -p no:cacheprovider

Skipped where optimum is missing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from knowledge import KnowledgeBase
from knowledge.chunking import chunk_document, embed_text
from knowledge.embedding import bundled_model_path
from knowledge.loaders import list_files, load_file
from tests.perf.knowledge_eval import QUESTIONS

pytest.importorskip("optimum", reason="needs optimum[onnxruntime]; see the module docstring")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _chunks(model) -> tuple[list[str], list[str]]:  # type: ignore[no-untyped-def]
    root = KnowledgeBase.sample_path()
    texts, locations = [], []
    for path in list_files(root):
        doc = load_file(path, root)
        count = lambda t: len(model.tokenizer(t, add_special_tokens=False)["input_ids"])  # noqa: E731
        for chunk in chunk_document(
            doc.kind, doc.text, count_tokens=count, chunk_tokens=200, chunk_overlap=40
        ):
            texts.append(embed_text(doc.title, chunk))
            locations.append(doc.uri)
    return texts, locations


def _mrr(model, texts: list[str], locations: list[str]) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    vectors = model.encode(texts, normalize_embeddings=True, batch_size=32)
    questions = model.encode([q for q, _ in QUESTIONS], normalize_embeddings=True)
    reciprocal, hit1 = [], 0
    for (_, expected), q in zip(QUESTIONS, questions, strict=True):
        order = np.argsort(-(vectors @ q))
        ranked = list(dict.fromkeys(locations[i] for i in order))
        rank = ranked.index(expected) + 1
        reciprocal.append(1 / rank)
        hit1 += rank == 1
    return float(np.mean(reciprocal)), hit1 / len(QUESTIONS)


def test_onnx_against_torch(tmp_path: Path) -> None:
    from sentence_transformers import SentenceTransformer, export_dynamic_quantized_onnx_model

    folder = tmp_path / "model"
    shutil.copytree(bundled_model_path(), folder)
    torch_model = SentenceTransformer(str(folder), device="cpu")
    onnx_model = SentenceTransformer(str(folder), device="cpu", backend="onnx")
    onnx_model.save_pretrained(str(folder))
    export_dynamic_quantized_onnx_model(onnx_model, "avx2", str(folder))
    int8_model = SentenceTransformer(
        str(folder),
        device="cpu",
        backend="onnx",
        model_kwargs={"file_name": "onnx/model_quint8_avx2.onnx"},
    )
    texts, locations = _chunks(torch_model)
    corpus = texts * 10
    print(f"\nembedding backends, {len(corpus)} chunks (the sample x10), batch 32, 2-core CPU")
    reference = torch_model.encode(texts, normalize_embeddings=True)
    for name, model in (("torch", torch_model), ("onnx", onnx_model), ("onnx-int8", int8_model)):
        model.encode(texts[:32])  # warm up
        started = time.perf_counter()
        model.encode(corpus, batch_size=32, normalize_embeddings=True)
        seconds = time.perf_counter() - started
        mrr, hit1 = _mrr(model, texts, locations)
        agree = float(
            np.mean(np.sum(model.encode(texts, normalize_embeddings=True) * reference, axis=1))
        )
        print(
            f"  {name:<10} {len(corpus) / seconds:6.1f} chunks/s  dense MRR {mrr:.3f} hit@1 {hit1:.3f}"
            f"  mean cosine to torch {agree:.4f}"
        )
