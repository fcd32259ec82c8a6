"""`[console]`: the agents' console settings."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, field_validator


class ConsoleSettings(BaseModel):
    """`[console]`: login, session length and where approved FAQ answers are written."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="serve the agents' console at /console")
    password: SecretStr | None = Field(
        default=None,
        description="secret: TEAMBOT_CONSOLE__PASSWORD; only bootstraps the first admin account",
    )
    session_hours: float = Field(default=12, gt=0, le=720, description="login lasts this long")
    timezone: str = Field(
        default="", description='times shown in this zone; "" = the [escalation] timezone'
    )
    login_attempts_per_client: int = Field(
        default=5, ge=1, le=1000, description="failed logins from one address before a lockout"
    )
    login_attempts_overall: int = Field(
        default=50, ge=1, le=100_000, description="failed logins from anywhere before a lockout"
    )
    login_window_minutes: float = Field(
        default=15, gt=0, le=1440, description="failures count within this window"
    )
    login_lockout_minutes: float = Field(
        default=15, gt=0, le=1440, description="how long a lockout lasts"
    )
    origins: list[str] = Field(
        default_factory=list,
        description='the console\'s public addresses ("https://support.example.com") when a '
        "proxy in front changes the Host header; forms from anywhere else are refused",
    )
    faq_dir: str = Field(
        default="./data/faq", description="folder of the managed FAQ (approved human answers)"
    )
    faq_collection: str = Field(
        default="default", description="knowledge collection the managed FAQ feeds"
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if not value:
            return value
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f'unknown time zone {value!r}; use an IANA name like Asia/Shanghai, or ""'
            ) from error
        return value
