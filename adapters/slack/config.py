"""`[slack]` settings (owned by the Slack adapter)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class SlackSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in Slack")
