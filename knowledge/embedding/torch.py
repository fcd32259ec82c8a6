"""The torch backend: any sentence-transformers model, run by sentence-transformers itself.

The way to bring a model the onnx backend cannot run (no ONNX graph and not a BERT encoder, an
unusual pooling), or to embed on a GPU (`embedding_device`). Needs the optional install
`pip install 'teambot[torch]'` (after the CPU build of torch: see the README).

All loading, tokenizing and encoding happens on the one worker thread: torch is not cheap to
share between threads, and the Hugging Face fast tokenizer raises "Already borrowed" when two
threads use it at once.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

from knowledge.embedding.base import (
    BYTE_PIECE,
    EmbeddingModelError,
    LocalEmbedder,
    bundled_model_path,
)
from knowledge.families import AUTO, language_of


class TorchEmbedder(LocalEmbedder):
    """Embeds with a sentence-transformers model (torch); see the module docstring."""

    backend_name = "torch"

    def __init__(
        self,
        model: str = "",
        *,
        device: str = "cpu",
        threads: int = 0,
        batch_size: int = 64,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        """threads: torch's CPU threads (process-wide), set when the model loads; 0 = torch's
        default of one per core."""
        super().__init__(
            model,
            batch_size=batch_size,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            languages=languages,
        )
        self._threads = threads
        self._device = device
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dimension(self) -> int:
        """The embedding size; loads the model (blocking) when not loaded yet."""
        model = self._load()
        # sentence-transformers 6 renamed the method (the old name warns).
        getter = getattr(model, "get_embedding_dimension", None)
        return int(getter() if getter else model.get_sentence_embedding_dimension())

    def count_tokens(self, text: str) -> int:
        tokenizer = self._load().tokenizer
        return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def readable(self, text: str) -> float:
        """As `OnnxEmbedder.readable`: the share of wordpieces the model knows."""
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
            if i != unknown and not BYTE_PIECE.match(str(piece))
        )
        return known / len(ids)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        vectors = self._load().encode(
            texts,
            batch_size=self.batch_size,
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
        # No network on our machines: never let transformers or the hub try to download.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        started = time.perf_counter()
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging
        except ImportError as exc:
            raise EmbeddingModelError(
                "knowledge.embedding_backend = 'torch' needs torch and sentence-transformers: "
                "`pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` "
                "then `pip install 'teambot[torch]'`, or set embedding_backend = 'onnx'"
            ) from exc

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        if self._threads:
            import torch

            torch.set_num_threads(self._threads)
        source = str(bundled_model_path()) if not self._model_name else self._model_name
        try:
            model = SentenceTransformer(source, device=self._device)
        except Exception as exc:
            raise EmbeddingModelError(
                f"cannot load embedding model {source!r} offline ({type(exc).__name__}: {exc}): "
                "set knowledge.embedding_model to a local folder holding a sentence-transformers "
                "model (or a name already in the Hugging Face cache, e.g. with `huggingface-cli "
                "download`), or leave it empty for the bundled all-MiniLM-L6-v2"
            ) from exc
        self.load_seconds = time.perf_counter() - started
        return model
