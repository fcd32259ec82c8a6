"""`[feishu]` settings (owned by the Feishu/Lark adapter)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FeishuSettings(BaseModel):
    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=False, description="answer in Feishu / Lark")
