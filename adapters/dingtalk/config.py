"""`[dingtalk]` settings (owned by the DingTalk adapter)."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class DingTalkSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in DingTalk")
    client_id: str = Field(default="", description="the app's Client ID (AppKey)")
    client_secret: SecretStr | None = Field(
        default=None, description="secret: TEAMBOT_DINGTALK__CLIENT_SECRET only"
    )
    robot_code: str = Field(default="", description='"" = client_id (the usual case)')
    openapi_endpoint: str = Field(
        default="https://api.dingtalk.com",
        pattern=r"^https?://[^/]+$",
        description="DingTalk OpenAPI origin (Stream gateway, token, robot and card APIs)",
    )
    card_template_id: str = Field(default="", description='AI card template id; "" = markdown')
    card_content_key: str = Field(
        default="content", min_length=1, description="the template's streamed markdown variable"
    )
    thread_idle_minutes: float = Field(
        default=30.0, gt=0, le=10_080, description="a question after this much quiet = new thread"
    )
    thinking_notice_after: float = Field(
        default=3.0, ge=0, le=120, description='seconds before a "thinking…" notice (no card)'
    )
    update_interval: float = Field(
        default=1.0, ge=0.05, le=60, description="seconds between AI card streaming updates"
    )
    max_chars: int = Field(default=4000, ge=200, le=20_000, description="per markdown message")
    escalation_conversation_id: str = Field(
        default="", description="open conversation id of the group that receives escalations"
    )
    agents: list[str] = Field(
        default_factory=list, description="staff ids of the people who take escalated threads"
    )
    watchdog_idle: float = Field(
        default=180.0, gt=0, le=3600, description="reconnect after this long without a frame"
    )
    reconnect_initial: float = Field(default=1.0, gt=0, le=60, description="first backoff (s)")
    reconnect_max: float = Field(default=60.0, gt=0, le=600, description="longest backoff (s)")
    open_timeout: float = Field(
        default=10.0, gt=0, le=120, description="seconds for the Stream gateway's connection open"
    )
    stop_timeout: float = Field(
        default=10.0, ge=0, le=300, description="seconds shutdown waits for answers in flight"
    )
    leader_poll: float = Field(
        default=3.0,
        gt=0,
        le=300,
        description="with several replicas on PostgreSQL: how often a standby tries to take over",
    )

    @property
    def robot(self) -> str:
        return self.robot_code or self.client_id
