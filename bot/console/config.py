"""`[console]`: the agents' console settings."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr


class ConsoleSettings(BaseModel):
    """`[console]`: login, session length and where approved FAQ answers are written."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="serve the agents' console at /console")
    password: SecretStr | None = Field(
        default=None, description="secret: TEAMBOT_CONSOLE__PASSWORD; without it, no console"
    )
    session_hours: float = Field(default=12, gt=0, le=720, description="login lasts this long")
    faq_dir: str = Field(
        default="./data/faq", description="folder of the managed FAQ (approved human answers)"
    )
    faq_collection: str = Field(
        default="default", description="knowledge collection the managed FAQ feeds"
    )
