"""What an adapter gives the core to talk back: the core never calls a platform SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from engine.messages import Answer, EscalationNotice, Inbound, ThreadKey


@dataclass(frozen=True, slots=True)
class ChannelLimits:
    """What a platform allows: the core clips an update to `max_chars` and, with `can_edit`
    False, sends only the final message; pacing the edits is the adapter's job."""

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


class Core(Protocol):
    """What an adapter may ask of the core (engine.conversation.Conversation is one): the core
    decides whether and how to answer, and whether an agent's message takes a thread over; the
    adapter verifies, converts (marking agents, mentions, whether the platform has threads),
    acks and renders."""

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """Answer one message (None: already handled, or not for the bot)."""

    async def feedback(
        self,
        turn_id: int,
        user_id: str,
        value: str,
        comment: str = "",
        reply: ReplyChannel | None = None,
        *,
        chat: tuple[str, str, str] | None = None,
    ) -> None:
        """A "Helpful" ("up") or "not helpful" ("down") click on an answer; give `reply` (a
        channel into that thread) so a "down" can escalate where the channel says so.
        LookupError when there is no such turn, or none in `chat` (platform, tenant, chat id)."""

    async def escalate(
        self, key: ThreadKey, reply: ReplyChannel, *, trigger: str, requested_by: str = ""
    ) -> None:
        """A "Talk to a person" click: the thread goes to the escalation channel. LookupError
        (engine.threads.lifecycle.NothingAsked) when nobody asked anything in the thread."""
