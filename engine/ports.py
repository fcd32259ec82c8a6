"""What an adapter gives the core to talk back: the core never calls a platform SDK."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from engine.messages import Answer, ChatType, Click, EscalationNotice, Inbound, ThreadKey


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


@runtime_checkable
class ReplyFor(Protocol):
    """Makes a reply channel into a thread the core found (a click on an answer sent before a
    restart names only its turn): the thread's key and chat type (None: not known)."""

    def __call__(self, key: ThreadKey, chat_type: ChatType | None) -> ReplyChannel: ...


class Core(Protocol):
    """What an adapter may ask of the core (engine.conversation.Conversation is one): the core
    decides whether and how to answer, and whether an agent's message takes a thread over; the
    adapter verifies, converts (marking agents, mentions, whether the platform has threads),
    acks and renders."""

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """Answer one message (None: already handled, or not for the bot)."""

    async def clicked(self, click: Click, reply: ReplyChannel | ReplyFor | None = None) -> None:
        """A button: "up"/"down" records feedback (a "down" escalates where the chat's rules say
        so and `reply` is given), "human" hands the thread to a person. `reply` is a channel
        into the thread, or a `ReplyFor` where the adapter does not know the thread. LookupError
        when there is no such turn, or none in `click.chat`; for "human",
        engine.threads.lifecycle.NothingAsked when nobody asked anything in the thread."""
