"""Sentence embeddings, off the event loop: one interface, three backends, one factory.

- `onnx` (default): ONNX Runtime and `tokenizers`, no torch (`onnx.py`, graphs by `graph.py`);
- `torch`: sentence-transformers itself, for any model, optional install (`torch.py`);
- `http`: an OpenAI-compatible `/v1/embeddings` server (`http.py`).

`make_embedder` builds the one the settings name. A backend is imported only when chosen, so
the serving path never imports torch unless asked to.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from knowledge.embedding.base import (
    BUNDLED_NAME,
    QUERY_CACHE,
    Embedder,
    EmbeddingModelError,
    LocalEmbedder,
    bundled_model_path,
)

if TYPE_CHECKING:
    from knowledge.config import KnowledgeSettings

__all__ = [
    "BUNDLED_NAME",
    "QUERY_CACHE",
    "Embedder",
    "EmbeddingModelError",
    "LocalEmbedder",
    "bundled_model_path",
    "make_embedder",
]


def make_embedder(settings: KnowledgeSettings) -> Embedder:
    """The embedder `settings.embedding_backend` names, configured from `settings`."""
    s = settings
    if settings.embedding_backend == "http":
        from knowledge.embedding.http import HttpEmbedder

        return HttpEmbedder(
            settings.embedding_model,
            url=settings.embedding_url,
            api_key=settings.embedding_api_key.get_secret_value(),
            timeout=settings.embedding_timeout,
            retries=settings.embedding_retries,
            input_type=settings.embedding_input_type,
            batch_size=s.embedding_batch_size,
            query_prefix=s.embedding_query_prefix,
            passage_prefix=s.embedding_passage_prefix,
            languages=list(s.embedding_languages),
        )
    if settings.embedding_backend == "torch":
        from knowledge.embedding.torch import TorchEmbedder

        return TorchEmbedder(
            settings.embedding_model,
            device=settings.embedding_device,
            threads=settings.embedding_threads,
            batch_size=s.embedding_batch_size,
            query_prefix=s.embedding_query_prefix,
            passage_prefix=s.embedding_passage_prefix,
            languages=list(s.embedding_languages),
        )
    from knowledge.embedding.onnx import OnnxEmbedder

    return OnnxEmbedder(
        settings.embedding_model,
        threads=settings.embedding_threads,
        int8=settings.embedding_int8,
        cache_dir=Path(s.embedding_cache_dir).expanduser() if s.embedding_cache_dir else None,
        batch_size=s.embedding_batch_size,
        query_prefix=s.embedding_query_prefix,
        passage_prefix=s.embedding_passage_prefix,
        languages=list(s.embedding_languages),
    )
