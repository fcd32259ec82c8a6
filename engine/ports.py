"""What an adapter gives the core to talk back: the core never calls a platform SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.messages import Answer, EscalationNotice


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What a platform allows; the core splits and throttles by these."""

    max_chars: int = 4000
    can_edit: bool = True  # False: no streaming edits, only the final message


class ReplyChannel(Protocol):
    """One reply in one thread: open a placeholder, update while streaming, finish."""

    @property
    def limits(self) -> ChannelLimits: ...

    async def open(self, language: str = "en") -> None:
        """Show that the bot is working (placeholder message, typing indicator) in `language`,
        the asker's, which the core decided."""

    async def update(self, text: str) -> None:
        """Replace the visible partial answer with `text` (the whole text so far)."""

    async def finish(self, answer: Answer) -> None:
        """Show the final answer with its citations and feedback actions."""

    async def post_escalation(self, notice: EscalationNotice) -> None:
        """Tell the human channel that a thread needs a person."""
