"""The onnx backend beside plain sentence-transformers, in one run: ingestion speed per CPU-second,
agreement of the vectors, and retrieval quality on the project's evaluation set.

Run on demand: `.venv/bin/python -m pytest tests/perf/test_knowledge_onnx.py -s -p no:cacheprovider`
(TEAMBOT_BENCH_COPIES sets how many copies of the sample's chunks are embedded, default 8).

- ingestion: the sample handbook's chunks (as ingest makes them) × copies, embedded by plain
  `SentenceTransformer.encode` (batch 32, torch's threads: one per core) and by the onnx backend
  (token-sized batches on `embedding_threads` threads: 1 and 2; fp32 and int8), and by the torch
  backend on one thread, as `embedding_threads = 1` ran before. CPU seconds are
  the whole process's (every thread), so chunks per CPU-second compare the work, not the cores.
- quality: the evaluation corpus (sample + handbook + notes, `tests/perf/eval_set.py`) indexed
  with each backend and asked the same questions: MRR@5 per mode and language.

Prints the figures; asserts the onnx backend's MRR within 0.005 of torch's.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import numpy as np

from knowledge import KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.chunking import chunk_document, embed_text
from knowledge.embedding import Embedder, bundled_model_path
from knowledge.embedding.onnx import OnnxEmbedder
from knowledge.embedding.torch import TorchEmbedder
from knowledge.eval import evaluate
from knowledge.loaders import list_files, load_file
from tests.perf.eval_set import cases, write_corpus

COPIES = int(os.environ.get("TEAMBOT_BENCH_COPIES", "8"))


def _chunks(embedder: OnnxEmbedder) -> list[str]:
    root = KnowledgeBase.sample_path()
    texts = []
    for path in list_files(root):
        doc = load_file(path, root)
        for chunk in chunk_document(
            doc.kind,
            doc.text,
            count_tokens=embedder.count_tokens,
            chunk_tokens=200,
            chunk_overlap=40,
        ):
            texts.append(embed_text(doc.title, chunk))
    return texts


def _timed(label: str, count: int, encode: object) -> np.ndarray:
    assert callable(encode)
    cpu, wall = time.process_time(), time.perf_counter()
    vectors = np.asarray(encode())
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"  {label:<38} {count / cpu:6.1f} chunks/CPU-s  {count / wall:6.1f} chunks/s")
    return vectors


async def test_ingestion_speed() -> None:
    from sentence_transformers import SentenceTransformer

    onnx = {
        "onnx, 1 thread": OnnxEmbedder(threads=1),
        "onnx, 2 threads": OnnxEmbedder(threads=2),
        "onnx int8, 1 thread": OnnxEmbedder(threads=1, int8=True),
    }
    texts = _chunks(onnx["onnx, 1 thread"])
    corpus = texts * COPIES
    plain = SentenceTransformer(str(bundled_model_path()), device="cpu")
    plain.encode(texts[:32])  # warm up (first-call allocations)
    for embedder in onnx.values():
        embedder._encode(texts[:32])
    print(
        f"\nembedding {len(corpus)} chunks (the sample's {len(texts)} x {COPIES}), {os.cpu_count()}-core CPU"
    )
    reference = _timed(
        "sentence-transformers encode, batch 32",
        len(corpus),
        lambda: plain.encode(corpus, batch_size=32, normalize_embeddings=True),
    )
    today = TorchEmbedder(threads=1)  # what embedding_threads = 1 ran before: torch on one core
    today._encode(texts[:32])
    _timed("torch backend, 1 thread (before)", len(corpus), lambda: today._encode(corpus))
    for label, embedder in onnx.items():
        vectors = _timed(label, len(corpus), lambda e=embedder: e._encode(corpus))
        agree = np.sum(vectors * reference, axis=1)
        print(f"  {'':<38} cosine to sentence-transformers: min {agree.min():.5f}")
        await embedder.close()


async def _mrr(root: Path, embedder: Embedder) -> dict[str, dict[str, float]]:
    corpus = root / "corpus"
    await asyncio.to_thread(write_corpus, corpus)
    names = ("sample", "handbook", "notes")
    kb = await KnowledgeBase.open(
        KnowledgeSettings(
            persist_dir=root / "chroma",
            collection="evaluation",
            sources=[
                SourceSettings(name=n, kind="directory", location=str(corpus / n)) for n in names
            ],
        ),
        embedder=embedder,
    )
    try:
        for name in names:
            report = await kb.refresh(name)
            assert report.result == "ok", report.summary()
        result = await evaluate(kb.retriever, cases(), source="the evaluation set")
    finally:
        await kb.close()
    return {
        mode: {group: s.mrr for group, s in groups.items()} for mode, groups in result.modes.items()
    }


async def test_retrieval_quality_is_unchanged(tmp_path: Path) -> None:
    scores = {}
    for name, embedder in (("torch", TorchEmbedder()), ("onnx", OnnxEmbedder())):
        try:
            scores[name] = await _mrr(tmp_path / name, embedder)
        finally:
            await embedder.close()
    print("\nMRR@5 on the evaluation set: torch -> onnx")
    for mode, groups in scores["torch"].items():
        row = "  ".join(
            f"{group} {mrr:.3f} -> {scores['onnx'][mode][group]:.3f}"
            for group, mrr in groups.items()
        )
        print(f"  {mode:<8} {row}")
        for group, mrr in groups.items():
            assert abs(scores["onnx"][mode][group] - mrr) <= 0.005, (mode, group)
