"""The knowledge section of the settings (owned here so the package imports nothing of ours)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field


class KnowledgeSettings(BaseModel):
    """`[knowledge]` in teambot.toml."""

    model_config = {"extra": "forbid"}

    embedding_model: str = Field(
        default="",
        description="sentence-transformers model name or path; empty = bundled all-MiniLM-L6-v2",
    )
    embedding_device: str = Field(default="cpu", description="cpu | cuda | mps")
    persist_dir: Path = Field(default=Path("./data/chroma"), description="embedded chromadb folder")
    chroma_url: str = Field(default="", description="a Chroma server URL; empty = embedded")
    collection: str = Field(
        default="default", pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{1,61}[A-Za-z0-9]$"
    )
    chunk_tokens: int = Field(default=200, ge=32, le=2048)
    chunk_overlap: int = Field(default=40, ge=0, le=512)
    top_k: int = Field(default=4, ge=1, le=50)
    min_score: float = Field(
        default=0.35, ge=0.0, le=1.0, description="below this a passage is not grounding"
    )
    seed_sample: bool = Field(
        default=True, description="index the bundled sample handbook when the collection is empty"
    )
