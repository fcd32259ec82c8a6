"""`[slack]` settings (owned by the Slack adapter)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class SlackSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in Slack")
    # Secrets: only from TEAMBOT_SLACK__<KEY> or the secrets file, never from the TOML file.
    bot_token: SecretStr | None = Field(default=None, description="xoxb-… bot token")
    app_token: SecretStr | None = Field(
        default=None, description="xapp-… app-level token (connections:write): Socket Mode"
    )
    signing_secret: SecretStr | None = Field(
        default=None, description="verifies HTTP events; required in HTTP mode"
    )
    mode: Literal["auto", "socket", "http"] = Field(
        default="auto", description="auto: Socket Mode when app_token is set, else HTTP events"
    )
    api_url: str = Field(
        default="https://slack.com/api/", description="Slack Web API base URL (tests: a fake)"
    )
    update_interval: float = Field(
        default=1.5, ge=0.0, description="seconds between streamed edits of one message"
    )
    native_streaming: bool = Field(
        default=False, description="chat.startStream/appendStream/stopStream for thread replies"
    )
    # kept for config files written before [policy] follow_ups / followups_off; the core decides,
    # and bot/app.py folds these into [policy] ("slack:*", "slack:<channel>")
    follow_ups: bool = Field(
        default=True, description="old name: [policy] follow_ups, for Slack only"
    )
    followup_channels_off: list[str] = Field(
        default_factory=list, description='old name: [policy] followups_off "slack:<channel>"'
    )
    history_limit: int = Field(
        default=20, ge=0, le=200, description="earlier thread messages read when mentioned late"
    )
    history_chars: int = Field(
        default=1500, ge=0, description="at most this many characters of that thread context"
    )
    escalation_channel: str = Field(
        default="", description="channel id where escalation notices go; '' = log only"
    )
    escalation_mention: list[str] = Field(
        default_factory=list,
        description="who is pinged: user group ids (S…), user ids (U…/W…), 'here' or 'channel'",
    )
    agents: list[str] = Field(
        default_factory=list, description="user ids whose reply in an escalated thread = takeover"
    )
    watchdog_idle: float = Field(
        default=60.0,
        gt=0.0,
        description="seconds without any Socket Mode frame before reconnecting",
    )
    stop_timeout: float = Field(
        default=10.0, ge=0.0, description="seconds stop() waits for answers in flight"
    )
