"""The default backend: a sentence-transformers model run by ONNX Runtime, tokenized by
`tokenizers` — no torch, no sentence-transformers, ~50 MB of imports instead of ~500.

The model is the same folder sentence-transformers reads (the bundled all-MiniLM-L6-v2, a
local folder, or a name in the local Hugging Face cache), read the way it reads it: the
tokenizer from `tokenizer.json` truncated at `max_seq_length`, the pooling of `1_Pooling`
(mean, CLS or max), unit-length vectors. The graph is the folder's own `onnx/model.onnx` when
it ships one, else, for a BERT model, written once from its weights (`graph.py`) into the model
cache (`knowledge.embedding_cache_dir`); other models need an ONNX export or the torch backend.
With `int8`, the matrix products run in 8 bits (ONNX Runtime's dynamic quantization, on its
VNNI/AMX kernels) except each layer's feed-forward output, whose input (after GELU) has
outliers 10-17x its median that one 8-bit scale for the whole tensor cannot hold: ~1.7x the
fp32 speed, vectors at cosine ~0.997 to fp32. They differ, so it is another model (another
collection, re-embedded in the background). It is the default (`embedding_int8`): no
evaluation set of the project ranks lower with it, and `int8=False`, full precision, gives
sentence-transformers' own vectors (docs/performance.md, "int8 as the default?").

Passages are tokenized together, sorted by length and cut into batches of about
TOKENS_PER_BATCH tokens (little padding; small enough that a batch's activations stay in the
CPU's cache), which run on `threads` threads, one ONNX Runtime thread each.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np

from knowledge.config import cache_root
from knowledge.embedding.base import (
    BYTE_PIECE,
    EmbeddingModelError,
    LocalEmbedder,
    bundled_model_path,
)
from knowledge.families import AUTO, language_of

log = logging.getLogger(__name__)

INT8_VERSION = 4  # bump when _quantize changes: cached int8 graphs are rebuilt
# padded tokens a batch: ~3 MB of activations for all-MiniLM, within the cache; 2048 was 25 %
# slower on fp32 and 55 % on int8 (tests/perf/test_knowledge_onnx.py, docs/performance.md)
TOKENS_PER_BATCH = 512
# the int8 graph runs faster without this fusion: ONNX Runtime's fused residual + LayerNorm
# kernel cost 19 % of an int8 run, its separate Add and LayerNormalization a fraction of that
INT8_DISABLED_OPTIMIZERS = ["SkipLayerNormFusion"]
# graphs are written under one process's name (graph.save): one thread of it at a time
_WRITING = threading.Lock()


def default_cache_dir() -> Path:
    """Where built graphs are kept: $XDG_CACHE_HOME/teambot/models or ~/.cache/teambot/models."""
    return cache_root() / "models"


@dataclass(frozen=True)
class _Model:
    session: Any  # onnxruntime.InferenceSession
    tokenizer: Any  # tokenizers.Tokenizer, truncating at max_length
    counter: Any  # the same tokenizer without truncation, for token counts
    inputs: frozenset[str]
    pooling: str  # mean | cls | max
    lower: bool
    pad_id: int
    unknown: int | None
    dimension: int
    shrink: Any  # run options that give a large batch's memory back after it ran


class OnnxEmbedder(LocalEmbedder):
    """Embeds with ONNX Runtime; see the module docstring."""

    backend_name = "onnx"

    def __init__(
        self,
        model: str = "",
        *,
        threads: int = 1,
        int8: bool = False,
        cache_dir: Path | None = None,
        batch_size: int = 64,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        """threads: batches of passages encoded at once (0 = one per core)."""
        super().__init__(
            model,
            batch_size=batch_size,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            languages=languages,
        )
        self._threads = threads or os.cpu_count() or 1
        self._int8 = int8
        self._cache_dir = cache_dir or default_cache_dir()
        self._lock = threading.Lock()
        self._model: _Model | None = None
        self._pool: ThreadPoolExecutor | None = None

    @property
    def model_name(self) -> str:
        name = super().model_name
        return f"{name} (int8)" if self._int8 else name

    @property
    def dimension(self) -> int:
        return self._load().dimension

    def count_tokens(self, text: str) -> int:
        return len(self._load().counter.encode(text, add_special_tokens=False).ids)

    def readable(self, text: str) -> float:
        """0 when the text's language is not one the model declares, else the share of its
        wordpieces that are neither unknown nor single-byte fallbacks (all-MiniLM-L6-v2 reads
        most Chinese characters as [UNK]: its similarity for such a question says little)."""
        if not self.profile.reads(language_of(text)):
            return 0.0
        model = self._load()
        encoding = model.counter.encode(text, add_special_tokens=False)
        if not encoding.ids:
            return 1.0
        known = sum(
            1
            for i, piece in zip(encoding.ids, encoding.tokens, strict=True)
            if i != model.unknown and not BYTE_PIECE.match(piece)
        )
        return known / len(encoding.ids)

    async def close(self) -> None:
        await super().close()
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def _encode(self, texts: list[str]) -> list[list[float]]:
        model = self._load()
        if model.lower:
            texts = [t.lower() for t in texts]
        encodings = model.tokenizer.encode_batch([t.strip() for t in texts])
        lengths = [len(e.ids) for e in encodings]
        order = sorted(range(len(texts)), key=lengths.__getitem__)
        # int8: one text a run, since dynamic quantization takes one scale for the whole input,
        # a batched text's vector would depend on its neighbours (cosine down to 0.98)
        batches = _batches(order, lengths, 1 if self._int8 else self.batch_size)
        inputs = [[encodings[i] for i in batch] for batch in batches]
        if len(batches) > 1 and self._pool is not None:
            results = list(self._pool.map(self._run, repeat(model), inputs))
        else:
            results = [self._run(model, batch) for batch in inputs]
        vectors: list[list[float]] = [[] for _ in texts]
        for batch, result in zip(batches, results, strict=True):
            for i, row in zip(batch, result.tolist(), strict=True):
                vectors[i] = row
        if len(batches) > 1:
            _give_back()
        return vectors

    def _run(self, model: _Model, encodings: list[Any]) -> Any:
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), model.pad_id, dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        feed = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in model.inputs:
            feed["token_type_ids"] = np.zeros_like(ids)
        hidden = model.session.run(None, feed, model.shrink if ids.size > 512 else None)[0]
        return _unit(_pool(hidden, mask, model.pooling))

    def _load(self) -> _Model:
        with self._lock:
            if self._model is None:
                started = time.perf_counter()
                self._model = self._build()
                if self._threads > 1:
                    self._pool = ThreadPoolExecutor(self._threads, "teambot-embed-batch")
                self.load_seconds = time.perf_counter() - started
            return self._model

    def _build(self) -> _Model:
        folder = self._folder()
        try:
            import onnxruntime
            from tokenizers import Tokenizer

            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = 1  # parallel batches instead (see _encode)
            options.inter_op_num_threads = 1
            options.log_severity_level = 3
            session = onnxruntime.InferenceSession(
                str(self._graph(folder)),
                options,
                providers=["CPUExecutionProvider"],
                disabled_optimizers=INT8_DISABLED_OPTIMIZERS if self._int8 else None,
            )
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            counter = Tokenizer.from_file(str(folder / "tokenizer.json"))
            shrink = onnxruntime.RunOptions()
            shrink.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        except EmbeddingModelError:
            raise
        except Exception as exc:
            raise self._unloadable(folder, exc) from exc
        settings = _json(folder / "sentence_bert_config.json")
        max_length = min(int(settings.get("max_seq_length") or 512), 512)
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length)
        counter.no_padding()
        counter.no_truncation()
        unk = getattr(tokenizer.model, "unk_token", None)
        pad = tokenizer.token_to_id("[PAD]")
        if pad is None:
            pad = tokenizer.token_to_id("<pad>")
        return _Model(
            session=session,
            tokenizer=tokenizer,
            counter=counter,
            inputs=frozenset(i.name for i in session.get_inputs()),
            pooling=_pooling(folder),
            lower=bool(settings.get("do_lower_case", False)),
            pad_id=pad or 0,
            unknown=tokenizer.token_to_id(unk) if isinstance(unk, str) else None,
            dimension=int(session.get_outputs()[0].shape[-1]),
            shrink=shrink,
        )

    def _folder(self) -> Path:
        """The model's folder: bundled, a path, or a name in the local Hugging Face cache."""
        if not self._model_name:
            return bundled_model_path()
        path = Path(self._model_name).expanduser()
        if path.is_dir():
            return path
        try:
            from huggingface_hub import snapshot_download

            return Path(snapshot_download(self._model_name, local_files_only=True))
        except Exception as exc:
            raise self._unloadable(self._model_name, exc) from exc

    def _unloadable(self, source: object, exc: Exception) -> EmbeddingModelError:
        return EmbeddingModelError(
            f"cannot load embedding model {str(source)!r} offline ({type(exc).__name__}: "
            f"{exc}): set knowledge.embedding_model to a local folder holding a "
            "sentence-transformers model (or a name already in the Hugging Face cache, e.g. "
            "with `huggingface-cli download`), or leave it empty for the bundled "
            "all-MiniLM-L6-v2"
        )

    def _graph(self, folder: Path) -> Path:
        """The ONNX graph to run: the folder's own, or one built (and cached) from weights."""
        from knowledge.embedding.graph import GRAPH_VERSION, build_bert, is_bert, save

        shipped = folder / "onnx" / "model.onnx"
        source = shipped if shipped.is_file() else folder / "model.safetensors"
        if not shipped.is_file() and not is_bert(folder):
            raise EmbeddingModelError(
                f"{folder} has no ONNX graph (onnx/model.onnx) and is not a BERT model whose "
                "graph teambot can write: export one (sentence-transformers: "
                "`SentenceTransformer(path, backend='onnx').save_pretrained(path)`), or set "
                "knowledge.embedding_backend = 'torch' (pip install 'teambot[torch]')"
            )
        stat = source.stat()
        key = f"{GRAPH_VERSION}|{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        fp32 = shipped if shipped.is_file() else self._cache_dir / digest / "model.onnx"
        int8 = self._cache_dir / f"{digest}-int8-v{INT8_VERSION}" / "model.onnx"
        try:
            with _WRITING:  # a serving model and the one being re-embedded to may both start
                if not fp32.is_file():
                    log.info("writing the ONNX graph of %s to %s (once)", folder, fp32.parent)
                    save(build_bert(folder), fp32.parent)
                if self._int8 and not int8.is_file():
                    log.info("quantizing %s to int8 into %s (once)", folder, int8)
                    _quantize(fp32, int8.parent)
        except OSError as exc:
            raise EmbeddingModelError(
                f"cannot write the ONNX graph of {folder} to {self._cache_dir} ({exc}): set "
                "knowledge.embedding_cache_dir to a folder teambot may write"
            ) from exc
        return int8 if self._int8 else fp32


def _batches(order: list[int], lengths: list[int], most: int) -> list[list[int]]:
    """Indices (sorted by length) cut into batches of at most `most` texts and about
    TOKENS_PER_BATCH padded tokens."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in order:
        if current and (len(current) >= most or (len(current) + 1) * lengths[i] > TOKENS_PER_BATCH):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


def _give_back() -> None:
    """Return the heap a run of passage batches freed to the system (glibc keeps it otherwise:
    ~40 MB a serving process would carry for the rest of its life after ingesting)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to give back this way
        pass


def _pool(hidden: Any, mask: Any, pooling: str) -> Any:
    if pooling == "cls":
        return hidden[:, 0]
    weights = mask[:, :, None].astype(np.float32)
    if pooling == "max":
        return np.where(weights > 0, hidden, np.float32(-1e9)).max(axis=1)
    return (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)


def _unit(vectors: Any) -> Any:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.clip(norms, 1e-12, None)


def _json(path: Path) -> dict[str, Any]:
    return dict(json.loads(path.read_text())) if path.is_file() else {}


def _pooling(folder: Path) -> str:
    """The pooling of the model's sentence-transformers config (mean when it has none)."""
    modules = (
        json.loads((folder / "modules.json").read_text())
        if (folder / "modules.json").is_file()
        else []
    )
    paths = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith("Pooling")]
    config = _json(folder / (paths[0] if paths else "1_Pooling") / "config.json")
    modes = [k for k, v in config.items() if k.startswith("pooling_mode_") and v]
    known = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}
    known["pooling_mode_max_tokens"] = "max"
    if not modes:
        return "mean"
    if len(modes) > 1 or modes[0] not in known:
        raise EmbeddingModelError(
            f"{folder}: pooling {', '.join(modes)} is not supported by the onnx backend: "
            "set knowledge.embedding_backend = 'torch' (pip install 'teambot[torch]')"
        )
    return known[modes[0]]


def _quantize(source: Path, target: Path) -> None:
    """int8 weights for the matrix products, one scale per output channel, except each
    layer's feed-forward output (see the module docstring); the embedding tables stay fp32
    (quantized too, a passage's vector moved by up to 0.16 in cosine). `target`: the folder to
    write (model.onnx and its weights file)."""
    import tempfile

    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    from knowledge.embedding.graph import save

    model = onnx.load(str(source))
    excluded = _feed_forward_outputs(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.TemporaryDirectory(dir=target.parent, prefix=".quantizing-")
    partial = Path(scratch.name) / "model.onnx"
    quiet = _QuantizerAdvice()  # it tells the root logger to pre-process the graph: a warning
    logging.getLogger().addFilter(quiet)  # an operator could do nothing about, at first start
    try:
        quantize_dynamic(
            model,
            str(partial),
            weight_type=QuantType.QInt8,
            per_channel=True,
            op_types_to_quantize=["MatMul"],
            nodes_to_exclude=excluded,
        )
    finally:
        logging.getLogger().removeFilter(quiet)
    with scratch:  # written again as a graph and a weights file ONNX Runtime maps, like fp32's
        save(onnx.load(str(partial)), target)


class _QuantizerAdvice(logging.Filter):
    """Drops ONNX Runtime's quantizer's advice to run its pre-processing (the graph is ours)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Please consider to run pre-processing")


def _feed_forward_outputs(model: Any) -> list[str]:
    """The names of the matrix products that narrow (more rows than columns: a transformer
    layer's feed-forward output), naming the graph's unnamed nodes on the way."""
    shapes = {w.name: tuple(w.dims) for w in model.graph.initializer}
    found = []
    for index, node in enumerate(model.graph.node):
        node.name = node.name or f"{node.op_type}_{index}"
        dims = shapes.get(node.input[1], ()) if node.op_type == "MatMul" else ()
        if len(dims) == 2 and dims[0] > dims[1]:
            found.append(node.name)
    return found
