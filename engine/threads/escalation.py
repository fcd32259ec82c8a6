"""When a thread goes to a human, and what the asker is told.

Triggers (each on or off per channel): the asker asks for a person, the knowledge base had
nothing (no grounding), negative feedback, the model server failed for this question, or the
thread reached N unresolved turns. A "Talk to a person" button always escalates.
"""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator

from engine.catalog import MESSAGES, phrase

# Whole-message requests for a person, in Chinese and English. Kept strict on purpose:
# "how do I add a human user?" is a question, "human please" is a request.
_ASKS_FOR_HUMAN = re.compile(
    r"^\s*(?:/human|/agent|转人工|人工客服|人工服务|找人工|找人|真人|"
    r"(?:please\s+)?(?:(?:talk|speak)\s+to\s+)?(?:a\s+)?(?:human|person|real person|agent)"
    r"(?:\s+please)?)\s*[.!！。?？]*\s*$",
    re.IGNORECASE,
)
_RESOLVES = re.compile(
    r"^\s*(?:/resolve|/resolved|/close|已解决|问题已解决|解决了|resolved|solved|"
    r"(?:the\s+)?(?:issue|problem)\s+(?:is\s+)?(?:resolved|solved))\s*[.!！。]*\s*$",
    re.IGNORECASE,
)

ASKED_FOR_HUMAN = "asked_for_human"
NO_GROUNDING = "no_grounding"
NEGATIVE_FEEDBACK = "negative_feedback"
MODEL_FAILURE = "model_failure"
UNRESOLVED_TURNS = "unresolved_turns"
BUTTON = "button"

# What each trigger is called where a person reads it (notices, the console): the catalog's
# "trigger_<name>" entries.
TRIGGER_LABELS: dict[str, dict[str, str]] = {
    trigger: MESSAGES[f"trigger_{trigger}"]
    for trigger in (
        ASKED_FOR_HUMAN,
        NO_GROUNDING,
        NEGATIVE_FEEDBACK,
        MODEL_FAILURE,
        UNRESOLVED_TURNS,
        BUTTON,
    )
}


def trigger_label(trigger: str, language: str = "en") -> str:
    """A trigger as words (`asked_for_human` -> "asked for a person"); unknown ones as given."""
    labels = TRIGGER_LABELS.get(trigger)
    return labels.get(language, labels["en"]) if labels else trigger


def trigger_labels(trigger: str) -> str:
    """Both languages, for a notice read by a mixed team: "提问人要求转人工 / asked for a person"."""
    if trigger not in TRIGGER_LABELS:
        return trigger
    return f"{trigger_label(trigger, 'zh')} / {trigger_label(trigger, 'en')}"


def asks_for_human(text: str) -> bool:
    """True when the whole message is a request to talk to a person."""
    return bool(_ASKS_FOR_HUMAN.match(text))


def resolves(text: str) -> bool:
    """True when the whole message marks the thread resolved ("/resolve", "已解决", "resolved")."""
    return bool(_RESOLVES.match(text))


class ChannelEscalation(BaseModel):
    """Per-channel overrides; a key left out keeps the `[escalation]` default."""

    model_config = {"extra": "forbid"}

    on_request: bool | None = None
    on_no_grounding: bool | None = None
    on_negative_feedback: bool | None = None
    on_model_failure: bool | None = None
    max_unresolved_turns: int | None = Field(default=None, ge=0)
    sla_minutes: float | None = Field(default=None, gt=0)


class EscalationSettings(BaseModel):
    """`[escalation]`: triggers, follow-up promises and business hours."""

    model_config = {"extra": "forbid"}

    on_request: bool = Field(default=True, description='"转人工", "human", … hands the thread over')
    on_no_grounding: bool = Field(
        default=False, description="escalate when the knowledge base has nothing"
    )
    on_negative_feedback: bool = Field(default=True, description='a "not helpful" click escalates')
    on_model_failure: bool = Field(
        default=False, description="escalate when the model server failed"
    )
    max_unresolved_turns: int = Field(default=0, ge=0, le=100, description="0 = off")
    sla_minutes: float = Field(
        default=15, gt=0, le=10_080, description="promised first human response"
    )
    idle_resolve_hours: float = Field(
        default=24, ge=0, le=8_760, description="close threads idle this long; 0 = never"
    )
    timezone: str = Field(default="Asia/Shanghai")
    business_hours: str = Field(default="09:00-18:00", pattern=r"^\d{2}:\d{2}-\d{2}:\d{2}$")
    business_days: list[int] = Field(default=[1, 2, 3, 4, 5], description="1 = Monday … 7 = Sunday")
    channels: dict[str, ChannelEscalation] = Field(
        default_factory=dict,
        description='overrides by "platform:chat_id" or "platform:*", e.g. "slack:C0123"',
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(
                f"unknown time zone {value!r}; use an IANA name like Asia/Shanghai"
            ) from error
        return value

    def for_chat(self, platform: str, chat_id: str) -> EscalationSettings:
        """These settings with the chat's (or its platform's) overrides applied; these settings
        themselves for a chat without any (no copy, no validation again per message)."""
        overrides = [
            found
            for key in (f"{platform}:*", f"{platform}:{chat_id}")
            if (found := self.channels.get(key)) is not None
        ]
        if not overrides:
            return self
        merged = self.model_dump(exclude={"channels"})
        for override in overrides:
            merged.update(override.model_dump(exclude_none=True))
        return EscalationSettings(**merged)

    def enabled(self, trigger: str) -> bool:
        return {
            ASKED_FOR_HUMAN: self.on_request,
            NO_GROUNDING: self.on_no_grounding,
            NEGATIVE_FEEDBACK: self.on_negative_feedback,
            MODEL_FAILURE: self.on_model_failure,
            UNRESOLVED_TURNS: self.max_unresolved_turns > 0,
            BUTTON: True,
        }.get(trigger, True)


def next_business_start(now: datetime, settings: EscalationSettings) -> datetime | None:
    """None when `now` is within business hours, else when they start next (in the zone)."""
    zone = ZoneInfo(settings.timezone)
    local = now.astimezone(zone)
    start_text, end_text = settings.business_hours.split("-")
    start, end = time.fromisoformat(start_text), time.fromisoformat(end_text)
    days = set(settings.business_days) or {1, 2, 3, 4, 5}
    if local.isoweekday() in days and start <= local.time() < end:
        return None
    day = local.date() if local.time() < start else local.date() + timedelta(days=1)
    while day.isoweekday() not in days:
        day += timedelta(days=1)
    return datetime.combine(day, start, tzinfo=zone)


def follow_up(now: datetime, settings: EscalationSettings, language: str) -> str:
    """What the asker is told: a person will reply, and when (business hours aware)."""
    opens = next_business_start(now, settings)
    if opens is None:
        return phrase("escalated_now", language, minutes=round(settings.sla_minutes))
    local_now = now.astimezone(opens.tzinfo)
    when = (
        opens.strftime("%H:%M")
        if opens.date() == local_now.date()
        else opens.strftime("%Y-%m-%d %H:%M")
    )
    return phrase("escalated_later", language, when=when, zone=settings.timezone)
