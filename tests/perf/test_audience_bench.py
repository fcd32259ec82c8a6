"""Benchmark: what audience filtering costs a query at 100,000 chunks (not a timed test).

Half the chunks belong to a source open to everyone; the other half to documents each shared
with one of CHATS chats (their own audiences, as `permissions = "platform"` gives them). A query
is timed (the question's embedding excluded) for: no reader (every audience, as before), a group
chat (the open source + one chat's documents), and the web chat (the open source alone), and
each answer is checked to hold nothing the reader may not see.

    .venv/bin/python -m pytest tests/perf/test_audience_bench.py -q -s -p no:cacheprovider

Scale with TEAMBOT_BENCH_QUERY_CHUNKS (default 100000).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import numpy as np

from knowledge import Embedder, KnowledgeBase
from knowledge.audience import Reader, audience_key
from knowledge.lexical import tokenize
from knowledge.live import LiveChunk
from knowledge.types import Audience
from tests.helpers import kb_settings

CHUNKS = int(os.environ.get("TEAMBOT_BENCH_QUERY_CHUNKS", "100000"))
CHATS = 200
QUESTIONS = [
    "How do I reset my VPN?",
    "How many days of annual leave do I get?",
    "I forgot my password and lost my phone",
    "How do I print a document?",
    "expense claim receipts",
    "新员工入职第一天要做什么",
]


def _audience(n: int) -> tuple[str, str, Audience | None]:
    """(source, key, own audience) of chunk n: even tens open, odd tens one chat's."""
    document = n // 10
    if document % 2 == 0:
        return "open", "src:open", None
    own = Audience(principals=frozenset({f"feishu:chat:oc_{document % CHATS}"}))
    return "shared", audience_key(own), own


async def _load(kb: KnowledgeBase) -> None:
    paragraphs = [
        block.strip()
        for path in KnowledgeBase.sample_path().glob("*.md")
        for block in path.read_text("utf-8").split("\n\n")
        if len(block.strip()) > 40
    ]
    rng = np.random.default_rng(3)
    step = 5000
    for start in range(0, CHUNKS, step):
        n = min(step, CHUNKS - start)
        ids = [f"bench:{start + i}" for i in range(n)]
        texts = [
            f"{paragraphs[(start + i) % len(paragraphs)]} (note {start + i})" for i in range(n)
        ]
        vectors = rng.normal(size=(n, 384)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        places = [_audience(start + i) for i in range(n)]
        metas = [
            {
                "source": source,
                "collection": "default",
                "uri": f"doc{(start + i) // 10}",
                "audience": key,
            }
            for i, (source, key, _) in enumerate(places)
        ]
        await kb.store.upsert(ids, vectors.tolist(), texts, metas)
        kb.live.learn({key: own for _, key, own in places if own is not None})
        tokens = await asyncio.to_thread(lambda texts=texts: [tokenize(t) for t in texts])
        chunks = [
            LiveChunk(i, "default", t, key)
            for i, t, (_, key, _) in zip(ids, tokens, places, strict=True)
        ]
        await asyncio.to_thread(kb.live.swap, chunks, ())


async def _timed(kb: KnowledgeBase, reader: Reader | None) -> tuple[list[float], set[str]]:
    times: list[float] = []
    sources: set[str] = set()
    for question in QUESTIONS * 3:
        started = time.perf_counter()
        passages = await kb.retriever.retrieve(question, k=8, reader=reader)
        times.append((time.perf_counter() - started) * 1000)
        sources.update(f"{p.source}:{p.location}" for p in passages)
    return times, sources


async def test_audience_filter_cost(tmp_path: Path, embedder: Embedder) -> None:
    kb = await KnowledgeBase.open(kb_settings(tmp_path / "chroma"), embedder=embedder)
    try:
        started = time.perf_counter()
        await _load(kb)
        print(
            f"\naudience filtering at {len(kb.live)} chunks (loaded in {time.perf_counter() - started:.0f} s)"
        )
        vectors = dict(zip(QUESTIONS, await embedder.embed(QUESTIONS), strict=True))
        real_embed = embedder.embed

        async def cached(texts: list[str]) -> list[list[float]]:
            return [vectors[t] for t in texts]

        embedder.embed = cached  # type: ignore[method-assign]
        try:
            readers: dict[str, Reader | None] = {
                "no reader (every audience)": None,
                "group chat oc_7": Reader("feishu", "tk1", "oc_7", "group"),
                "web chat": Reader("web", "local", "c1", "direct", "c1"),
            }
            for name, reader in readers.items():
                await _timed(kb, reader)  # warm up
                times, seen = await _timed(kb, reader)
                print(
                    f"  {name}: p50 {statistics.median(times):.1f} ms, "
                    f"max {max(times):.1f} ms, {len(seen)} distinct documents cited"
                )
                if name == "web chat":
                    assert all(s.startswith("open:") for s in seen)
                if name == "group chat oc_7":
                    shared = {int(s.split(":doc")[1]) for s in seen if s.startswith("shared:")}
                    assert all(d % CHATS == 7 for d in shared)
        finally:
            embedder.embed = real_embed  # type: ignore[method-assign]
    finally:
        await kb.close()
