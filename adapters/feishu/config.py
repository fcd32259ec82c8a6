"""`[feishu]` settings (owned by the Feishu/Lark adapter)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class FeishuSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in Feishu / Lark")
    app_id: str = Field(default="", description="the app's App ID (cli_…)")
    app_secret: SecretStr | None = Field(default=None, description="the app's App Secret")
    encrypt_key: SecretStr | None = Field(
        default=None, description="Encrypt Key (webhook mode: decrypts and signs events)"
    )
    verification_token: SecretStr | None = Field(
        default=None, description="Verification Token (webhook mode)"
    )
    mode: Literal["long_connection", "webhook"] = Field(
        default="long_connection",
        description="long_connection: no public URL needed; webhook: POST /feishu/events",
    )
    domain: str = Field(
        default="https://open.feishu.cn",
        pattern=r"^https?://[^/?#@]+$",
        description="Feishu https://open.feishu.cn, Lark https://open.larksuite.com",
    )
    update_interval: float = Field(
        default=1.0, ge=0.1, le=60, description="seconds between card updates (each is an API call)"
    )
    use_cardkit: bool = Field(
        default=True, description="CardKit streaming cards (needs cardkit:card:write), else patch"
    )
    escalation_chat_id: str = Field(
        default="", description="chat (oc_…) that receives escalation cards; empty = log only"
    )
    agents: list[str] = Field(
        default_factory=list, description="open_ids whose message in an escalated thread = takeover"
    )
    watchdog_idle: float = Field(
        default=300.0,
        ge=1.0,
        le=3600,
        description="seconds without any frame (pongs included) before the long connection is renewed",
    )
    request_timeout: float = Field(
        default=10.0, ge=1.0, le=120, description="seconds for one Open API call"
    )
    stop_timeout: float = Field(
        default=10.0, ge=0, le=120, description="seconds stop() waits for answers in flight"
    )
