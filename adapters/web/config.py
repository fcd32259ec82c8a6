"""`[webchat]`: the built-in web chat's sessions and limits (the page itself: `[server] web_chat`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


class WebChatSettings(BaseModel):
    """`[webchat]`: who a web chat belongs to, and how much one browser may ask of it."""

    model_config = {"extra": "forbid"}

    session_secret: SecretStr | None = Field(
        default=None,
        description="secret: TEAMBOT_WEBCHAT__SESSION_SECRET only; signs the session cookie. "
        "Unset: a random key kept in the database, shared by every replica",
    )
    session_days: float = Field(
        default=30, gt=0, le=400, description="a browser's session (and its chats) lasts this long"
    )
    escalations_per_hour: float = Field(
        default=6, gt=0, le=3600, description='"Talk to a person" clicks per session'
    )
    escalation_burst: int = Field(default=3, ge=1, le=100)
    max_body_bytes: int = Field(
        default=524_288,
        ge=1024,
        le=10_485_760,
        description="a larger request gets 413 (100,000 Chinese characters, the longest message "
        "[conversation] max_message_chars allows, fit)",
    )
    max_json_depth: int = Field(
        default=16, ge=2, le=200, description="JSON nested deeper than this gets 400"
    )
    events: Literal["auto", "postgres", "redis", "local"] = Field(
        default="auto",
        description="how an agent's reply, an apology or a late answer reaches a thread's pages "
        "open on other replicas: auto = Redis when [policy] redis_url is set, else PostgreSQL "
        "LISTEN/NOTIFY when [storage] is PostgreSQL, else this process only",
    )
