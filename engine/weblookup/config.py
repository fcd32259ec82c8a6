"""`[web]`: the web lookup (off by default)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator

WebMode = Literal["never", "on_request", "auto"]


class WebSettings(BaseModel):
    """`[web]`: when the bot may search the web, through which provider, and within what limits."""

    model_config = {"extra": "forbid"}

    mode: WebMode = Field(
        default="never",
        description="never | on_request (the asker says search/联网/…, or starts with /web) | auto",
    )
    provider: Literal["searxng", "ddgs", "tavily"] = Field(default="searxng")
    searxng_url: str = Field(
        default="http://127.0.0.1:8888", pattern=r"^https?://", description="SearXNG base URL"
    )
    tavily_url: str = Field(default="https://api.tavily.com", pattern=r"^https?://")
    api_key: SecretStr | None = Field(
        default=None, description="secret: TEAMBOT_WEB__API_KEY only (Tavily)"
    )
    tool_calling: bool = Field(
        default=True,
        description="auto mode: let the model call web_search when the server has a tool parser",
    )
    mask_queries: bool = Field(
        default=True,
        description="take personal data (phone, e-mail, ID and card numbers, secrets) out of "
        "a search query before it is sent to the provider",
    )
    max_results: int = Field(default=5, ge=1, le=20)
    fetch_pages: int = Field(default=3, ge=0, le=10, description="top results fetched in full")
    timeout: float = Field(default=6.0, gt=0, le=60, description="seconds for the whole lookup")
    max_bytes: int = Field(default=2_000_000, ge=10_000, le=50_000_000, description="per page")
    max_redirects: int = Field(default=3, ge=0, le=10)
    token_budget: int = Field(
        default=1500, ge=100, le=50_000, description="estimated tokens of web text per question"
    )
    cache_ttl: float = Field(default=600.0, ge=0, le=86_400, description="seconds; 0 = no cache")
    allow_hosts: list[str] = Field(
        default_factory=list,
        description="intranet hosts, IPs or CIDRs that may be fetched despite a private address",
    )
    allow_domains: list[str] = Field(
        default_factory=list, description="only fetch these domains (and subdomains); empty = any"
    )
    deny_domains: list[str] = Field(
        default_factory=list, description="never fetch these domains (and subdomains)"
    )
    channels: dict[str, WebMode] = Field(
        default_factory=dict,
        description='per-chat mode: {"slack:C0123" = "auto", "feishu:*" = "on_request"}',
    )

    @model_validator(mode="after")
    def _key_for_tavily(self) -> WebSettings:
        if self.enabled and self.provider == "tavily" and self.api_key is None:
            raise ValueError(
                "provider 'tavily' needs an API key: set TEAMBOT_WEB__API_KEY, or use "
                "provider = 'searxng' (self-hosted) or 'ddgs' (no key)"
            )
        return self

    @property
    def enabled(self) -> bool:
        """Whether any chat may use the web at all."""
        return self.mode != "never" or any(m != "never" for m in self.channels.values())
