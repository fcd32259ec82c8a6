"""`[dingtalk]` settings (owned by the DingTalk adapter)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DingTalkSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in DingTalk")
