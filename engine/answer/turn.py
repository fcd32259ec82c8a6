"""One message on its way through the core's steps, so each step takes one `Turn` instead of the
same six or eight arguments: what came in, where the answer goes, the thread and its earlier
turns, the asker's language and when the core took the message."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from engine.answer.prompt import HistoryTurn
from engine.messages import Answer, Inbound, Outcome, Timings
from engine.ports import ReplyChannel
from engine.store.records import ThreadRecord, TurnRecord
from engine.weblookup.types import WebSource
from knowledge import Passage


@dataclass(frozen=True, slots=True)
class Turn:
    inbound: Inbound
    reply: ReplyChannel
    thread: ThreadRecord
    history: tuple[TurnRecord, ...]  # the thread's earlier turns, oldest first
    language: str  # "zh" | "en": the asker's, which every reply follows
    started: float  # time.monotonic() when the core took the message
    new_thread: bool = False  # this message opened the thread: nothing of it is stored yet
    question: str = field(init=False)  # the message's text, stripped

    def __post_init__(self) -> None:
        object.__setattr__(self, "question", self.inbound.text.strip())

    def answer(self, text: str, outcome: Outcome) -> Answer:
        """A reply of this turn in the asker's language."""
        return Answer(text=text, outcome=outcome, language=self.language)

    def timed(self, timings: Timings) -> Timings:
        """`timings` with the total set: seconds since the core took the message."""
        return replace(timings, total=time.monotonic() - self.started)

    def speaking(self, language: str) -> Turn:
        return replace(self, language=language)


@dataclass(frozen=True, slots=True)
class Grounds:
    """What the model is asked with: the question, the passages found, the history it sees and
    the web results; `fit` (engine/answer/budget.py) cuts it to the model's context."""

    question: str
    passages: list[Passage] = field(default_factory=list)
    history: Sequence[HistoryTurn] = ()
    web: Sequence[WebSource] = ()
