"""Knowledge benchmarks: retrieval quality, ingestion throughput, refresh cost, query latency.

Run on demand (prints figures, asserts only what the issue requires of quality):
    .venv/bin/python -m pytest tests/perf/test_knowledge_bench.py -s -p no:cacheprovider
Scale with TEAMBOT_BENCH_CHUNKS (default 10000) and TEAMBOT_BENCH_QUERY_CHUNKS (default 100000).
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import time
from pathlib import Path

import numpy as np

from knowledge import Embedder, KnowledgeBase, KnowledgeSettings, SourceSettings
from knowledge.chunking import embed_text
from knowledge.lexical import tokenize
from knowledge.live import LiveChunk
from tests.helpers import kb_settings
from tests.perf.knowledge_eval import CHINESE, ENGLISH, OFF_TOPIC, QUESTIONS

BUILD_CHUNKS = int(os.environ.get("TEAMBOT_BENCH_CHUNKS", "10000"))
QUERY_CHUNKS = int(os.environ.get("TEAMBOT_BENCH_QUERY_CHUNKS", "100000"))


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def _ranks(kb: KnowledgeBase, mode: str) -> tuple[list[int | None], list[float]]:
    ranks: list[int | None] = []
    tops: list[float] = []
    for question, expected in QUESTIONS:
        passages = await kb.retriever.retrieve(question, k=10, mode=mode)
        locations = [p.location for p in passages]
        ranks.append(locations.index(expected) + 1 if expected in locations else None)
        tops.append(passages[0].score if passages else 0.0)
    return ranks, tops


def _metrics(ranks: list[int | None]) -> tuple[float, float, float]:
    n = len(ranks)
    hit1 = sum(1 for r in ranks if r == 1) / n
    hit5 = sum(1 for r in ranks if r is not None and r <= 5) / n
    mrr = sum(1 / r for r in ranks if r is not None) / n
    return hit1, hit5, mrr


async def test_retrieval_quality(sample_index: Path, embedder: Embedder) -> None:
    kb = await KnowledgeBase.open(kb_settings(sample_index), embedder=embedder)
    try:
        print(
            f"\nretrieval quality: {len(QUESTIONS)} questions "
            f"({len(ENGLISH)} English, {len(CHINESE)} Chinese), bundled all-MiniLM-L6-v2"
        )
        results = {}
        for mode in ("dense", "lexical", "hybrid"):
            ranks, tops = await _ranks(kb, mode)
            results[mode] = _metrics(ranks)
            en, zh = _metrics(ranks[: len(ENGLISH)]), _metrics(ranks[len(ENGLISH) :])
            print(
                f"  {mode:<8} hit@1 {results[mode][0]:.3f}  hit@5 {results[mode][1]:.3f}  "
                f"MRR {results[mode][2]:.3f}   (en MRR {en[2]:.3f}, zh MRR {zh[2]:.3f})"
            )
        _, tops = await _ranks(kb, "hybrid")
        off = [(await kb.retriever.retrieve(q, k=1) or [None])[0] for q in OFF_TOPIC]
        off_scores = [p.score if p else 0.0 for p in off]
        floor = kb.retriever.min_score
        print(
            f"  floor calibration (hybrid): on-topic best score min {min(tops):.3f} / "
            f"p10 {_pct(tops, 10):.3f}; off-topic best score max {max(off_scores):.3f}; "
            f"min_score {floor:.2f}: {sum(t >= floor for t in tops)}/{len(tops)} on-topic grounded, "
            f"{sum(s >= floor for s in off_scores)}/{len(off_scores)} off-topic grounded"
        )
        hybrid = results["hybrid"]
        for mode in ("dense", "lexical"):
            assert hybrid[2] > results[mode][2], f"hybrid MRR does not beat {mode}"
    finally:
        await kb.close()


def _scaled_corpus(root: Path, chunks_wanted: int, per_copy: int) -> int:
    """Copies of the sample, every paragraph made unique (a copy number in each), so that no
    chunk's vector can be reused from another copy."""
    copies = max(1, round(chunks_wanted / per_copy))
    sample = KnowledgeBase.sample_path()
    for n in range(copies):
        folder = root / f"team{n:04d}"
        folder.mkdir(parents=True)
        for path in sample.iterdir():
            if path.suffix == ".md":
                text = path.read_text("utf-8").replace("\n\n", f"\n\n(Team {n}) ")
                (folder / path.name).write_text(text, "utf-8")
            elif path.suffix == ".csv":
                rows = path.read_text("utf-8").splitlines()
                tagged = [rows[0]] + [f"(Team {n}) {row}" for row in rows[1:]]
                (folder / path.name).write_text("\n".join(tagged) + "\n", "utf-8")
            else:
                text = path.read_text("utf-8").replace("<p>", f"<p>(Team {n}) ")
                (folder / path.name).write_text(text, "utf-8")
    return copies


async def test_ingestion_and_refresh(tmp_path: Path, embedder: Embedder) -> None:
    probe = await KnowledgeBase.open(kb_settings(tmp_path / "probe"), embedder=embedder)
    per_copy = (await probe.ensure_sample()).chunks  # type: ignore[union-attr]
    await probe.close()
    corpus = tmp_path / "corpus"
    copies = await asyncio.to_thread(_scaled_corpus, corpus, BUILD_CHUNKS, per_copy)
    settings = KnowledgeSettings(
        persist_dir=tmp_path / "chroma",
        collection="bench",
        sources=[SourceSettings(name="corpus", kind="directory", location=str(corpus))],
    )
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        full = await kb.refresh("corpus")
        assert full.result == "ok", full.summary()
        print(f"\ningestion: {full.chunks} chunks from {full.added} documents ({copies} copies)")
        print(
            f"  full build          {full.seconds:7.1f} s  {full.chunks / full.seconds:6.1f} chunks/s"
        )

        # The same chunks through a plain SentenceTransformer.encode loop (batches of 32).
        known = await kb.catalog.known("corpus")
        ids = [i for d in known.values() for i in d.chunk_ids]
        stored = await kb.store.get(ids)
        texts = [embed_text(p.title, _chunk(p)) for p in stored.values()]
        model = embedder._load()
        started = time.perf_counter()
        for start in range(0, len(texts), 32):
            await asyncio.to_thread(
                model.encode, texts[start : start + 32], normalize_embeddings=True
            )
        plain = time.perf_counter() - started
        print(
            f"  plain encode loop   {plain:7.1f} s  {len(texts) / plain:6.1f} chunks/s (embedding only)"
        )

        same = await kb.refresh("corpus")
        print(
            f"  refresh, unchanged  {same.seconds:7.1f} s  = {same.seconds / full.seconds:.1%} of the build"
        )
        files = sorted(p for p in corpus.rglob("*.md"))
        changed = random.Random(7).sample(files, max(1, len(files) // 100))
        for path in changed:
            path.write_text(
                path.read_text("utf-8") + "\n\nUpdated: ask the helpdesk first.\n", "utf-8"
            )
        one = await kb.refresh("corpus")
        print(
            f"  refresh, 1% changed {one.seconds:7.1f} s  = {one.seconds / full.seconds:.1%} of the build "
            f"({one.changed} documents, {one.embedded}/{one.chunks} chunks embedded, rest reused)"
        )
    finally:
        await kb.close()


def _chunk(passage):  # type: ignore[no-untyped-def]
    from knowledge.types import Chunk

    return Chunk(passage.text, passage.section, 0, 0)


async def test_query_latency(tmp_path: Path, embedder: Embedder) -> None:
    """QUERY_CHUNKS chunks: sample texts varied, random unit vectors (embedding 100k real
    chunks would take an hour here; HNSW and BM25 cost depends on counts, not on meaning)."""
    settings = KnowledgeSettings(persist_dir=tmp_path / "chroma", collection="latency")
    kb = await KnowledgeBase.open(settings, embedder=embedder)
    try:
        sample = [p for p in KnowledgeBase.sample_path().glob("*.md")]
        paragraphs = [
            block.strip()
            for path in sample
            for block in path.read_text("utf-8").split("\n\n")
            if len(block.strip()) > 40
        ]
        rng = np.random.default_rng(3)
        started = time.perf_counter()
        step = 5000
        for start in range(0, QUERY_CHUNKS, step):
            n = min(step, QUERY_CHUNKS - start)
            ids = [f"bench:{start + i}" for i in range(n)]
            texts = [
                f"{paragraphs[(start + i) % len(paragraphs)]} (note {start + i})" for i in range(n)
            ]
            vectors = rng.normal(size=(n, 384)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            metas = [
                {
                    "source": "bench",
                    "collection": "default",
                    "uri": f"doc{(start + i) // 10}",
                    "title": "t",
                    "section": "s",
                }
                for i in range(n)
            ]
            await kb.store.upsert(ids, vectors.tolist(), texts, metas)
            tokens = await asyncio.to_thread(lambda texts=texts: [tokenize(t) for t in texts])
            await asyncio.to_thread(
                kb.live.swap,
                [LiveChunk(i, "default", t) for i, t in zip(ids, tokens, strict=True)],
                (),
            )
        print(
            f"\nquery latency at {len(kb.live)} chunks (loaded in {time.perf_counter() - started:.0f} s)"
        )
        questions = [q for q, _ in QUESTIONS]
        vectors = dict(zip(questions, await embedder.embed(questions), strict=True))
        for q in questions[:5]:
            await kb.retriever.retrieve(q)  # warm up
        with_embedding: list[float] = []
        for q in questions * 2:
            t = time.perf_counter()
            await kb.retriever.retrieve(q)
            with_embedding.append((time.perf_counter() - t) * 1000)
        real_embed = embedder.embed

        async def cached(texts: list[str]) -> list[list[float]]:
            return [vectors[t] for t in texts]

        embedder.embed = cached  # type: ignore[method-assign]
        try:
            without: list[float] = []
            for q in questions * 2:
                t = time.perf_counter()
                await kb.retriever.retrieve(q)
                without.append((time.perf_counter() - t) * 1000)
        finally:
            embedder.embed = real_embed  # type: ignore[method-assign]
        print(
            f"  excluding the query embedding: p50 {statistics.median(without):.1f} ms, "
            f"p99 {_pct(without, 99):.1f} ms"
        )
        print(
            f"  including the query embedding: p50 {statistics.median(with_embedding):.1f} ms, "
            f"p99 {_pct(with_embedding, 99):.1f} ms"
        )
    finally:
        await kb.close()
