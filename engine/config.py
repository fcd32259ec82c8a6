"""Settings sections owned by the engine: `[llm]`, `[conversation]`, `[storage]`."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class LLMSettings(BaseModel):
    """`[llm]`: the SGLang (or any OpenAI-compatible) model server."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(
        default=True, description="false = retrieval-only answers, never call a model"
    )
    base_url: str = Field(default="http://127.0.0.1:30000/v1", pattern=r"^https?://")
    model: str = Field(
        default="", description="empty = the first model the server lists at /v1/models"
    )
    api_key: SecretStr | None = Field(default=None, description="secret: TEAMBOT_LLM__API_KEY only")
    connect_timeout: float = Field(default=2.0, gt=0, le=60)
    first_token_timeout: float = Field(default=60.0, gt=0, le=600)
    idle_timeout: float = Field(
        default=30.0, gt=0, le=600, description="longest gap between streamed chunks"
    )
    total_timeout: float = Field(default=300.0, gt=0, le=3600)
    max_retries: int = Field(
        default=2, ge=0, le=10, description="retries before the first token only"
    )
    max_concurrency: int = Field(
        default=0,
        ge=0,
        le=1024,
        description="requests in flight to the server; 0 = as many as the server runs at once "
        "(SGLang max_running_requests, llama.cpp slots), 8 when it does not say",
    )
    context_size: int = Field(
        default=0,
        ge=0,
        le=10_000_000,
        description="tokens the model holds per request; 0 = what the server reports "
        "(llama.cpp /props, /v1/models), 8192 when it does not say; a smaller value caps it",
    )
    reasoning: Literal["auto", "opens_think", "plain"] = Field(
        default="auto",
        description="auto = from the server (SGLang reasoning_parser, llama.cpp chat template); "
        "opens_think = the template opens <think>, hold answers until </think>; plain = stream",
    )
    breaker_failures: int = Field(
        default=3, ge=1, le=100, description="consecutive failures that open the breaker"
    )
    breaker_reset: float = Field(
        default=30.0, gt=0, le=3600, description="seconds before a trial request"
    )
    temperature: float = Field(default=0.6, ge=0.0, le=2.0)
    top_p: float = Field(default=0.95, gt=0.0, le=1.0)
    max_tokens: int = Field(default=2048, ge=16, le=131072)
    instructions_as: Literal["system", "user"] = Field(
        default="user",
        description="where the fixed instructions go: DeepSeek advises no system prompt for R1 models",
    )


class ConversationSettings(BaseModel):
    """`[conversation]`: how the core answers."""

    model_config = {"extra": "forbid"}

    history_turns: int = Field(default=6, ge=0, le=100)
    history_tokens: int = Field(
        default=12_000,
        ge=0,
        le=1_000_000,
        description="at most this many (estimated) tokens of history, passages included; the "
        "model's context limits it further",
    )
    max_message_chars: int = Field(default=4000, ge=100, le=100_000)
    passage_chars: int = Field(
        default=1200, ge=100, le=20_000, description="per passage in the prompt"
    )
    rewrite_followups: bool = Field(
        default=True,
        description="make a follow-up standalone with the model before retrieval "
        "(else, or when the model is down: the previous question + the follow-up)",
    )
    rewrite_timeout: float = Field(
        default=8.0, gt=0, le=120, description="seconds the model may take to rewrite"
    )


class StorageSettings(BaseModel):
    """`[storage]`: the relational database."""

    model_config = {"extra": "forbid"}

    url: str = Field(
        default="sqlite+aiosqlite:///./data/teambot.db",
        pattern=r"^(sqlite\+aiosqlite|postgresql\+asyncpg)://",
        description="sqlite+aiosqlite:///PATH or postgresql+asyncpg://USER@HOST:PORT/DB",
    )
    echo: bool = False
    pool_size: int = Field(
        default=20,
        ge=1,
        le=500,
        description="PostgreSQL connections each process keeps open (10 more when busy); "
        "mind max_connections across replicas",
    )
    retention_days: int = Field(
        default=365,
        ge=0,
        le=36_500,
        description="questions, answers and threads older than this are purged daily; 0 = keep",
    )


class PolicySettings(BaseModel):
    """`[policy]`: who the bot answers and how often."""

    model_config = {"extra": "forbid"}

    user_per_minute: float = Field(default=10, gt=0, le=10_000, description="questions per user")
    user_burst: int = Field(default=5, ge=1, le=1000)
    chat_per_minute: float = Field(default=60, gt=0, le=100_000, description="questions per chat")
    chat_burst: int = Field(default=20, ge=1, le=10_000)
    redis_url: str = Field(
        default="",
        description="redis://host:6379/0 to share limits between replicas; empty = in-process",
    )
    allowed_tenants: list[str] = Field(
        default_factory=list,
        description='workspaces/tenants to answer in ("platform:*" for all of one platform\'s); '
        "empty = everywhere",
    )
    allowed_chats: list[str] = Field(
        default_factory=list,
        description='"platform:chat_id" or "platform:*" entries ("web:*": the built-in web '
        "chat); empty = every chat",
    )
    follow_ups: bool = Field(
        default=True,
        description="answer later messages in a thread the bot answered without a new mention "
        "(platforms with threads: Slack, Feishu)",
    )
    followups_off: list[str] = Field(
        default_factory=list,
        description='"platform:chat_id" or "platform:*" entries where follow-ups need a mention',
    )


class AttachmentSettings(BaseModel):
    """`[attachments]`: images and files people send with a question (engine/answer/attachments.py)."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="false = attachments are named, not read")
    max_mb: float = Field(default=20, gt=0, le=200, description="largest file read, in MB")
    max_files: int = Field(default=5, ge=1, le=20, description="files read per message")
    download_timeout: float = Field(
        default=30.0, gt=0, le=600, description="seconds to download one file from the platform"
    )
    read_timeout: float = Field(
        default=60.0, gt=0, le=600, description="seconds to read one file (OCR, PDF pages)"
    )
    max_chars: int = Field(
        default=6000,
        ge=200,
        le=100_000,
        description="characters of one file's text kept for the thread and the model",
    )
    keep_mb: float = Field(
        default=5,
        ge=0,
        le=200,
        description="files up to this size are kept with the thread for the console "
        "(thumbnail, download); 0 = keep only the text read",
    )
