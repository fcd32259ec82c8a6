"""Token budgets: the prompt is fitted to the model's context minus what the answer needs.

Counts and the budget come from engine/llm/probe.py (the server's tokenizer when it offers
one, else an estimate). What gives way, in order: the oldest history turns (down to
the last one), web results, the lowest-ranked passages (down to the best one), then the last
turn; a question that does not fit with its best passage is refused with its own answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from engine.answer.prompt import HistoryTurn, build_messages
from engine.answer.turn import Grounds
from engine.llm.probe import Budget, TokenCounter
from engine.weblookup.types import WebSource
from knowledge import Passage


@dataclass(frozen=True, slots=True)
class Fitted:
    messages: list[dict[str, str]]
    history: list[HistoryTurn]
    passages: list[Passage]
    web: list[WebSource]
    prompt_tokens: int  # as counted (exact when the server tokenized)
    dropped_turns: int = 0
    dropped_passages: int = 0


class QuestionTooLong(Exception):
    """The question alone (with the instructions) does not fit the model's context."""

    def __init__(self, tokens: int, limit: int) -> None:
        super().__init__(f"the question needs {tokens} prompt tokens; the model allows {limit}")
        self.tokens, self.limit = tokens, limit


async def fit(
    grounds: Grounds,
    *,
    budget: Budget,
    counter: TokenCounter,
    language: str,
    instructions_as: str,
    passage_chars: int,
) -> Fitted:
    """The prompt for this turn, cut to `budget.prompt` tokens (see the module docstring)."""
    question, passages, history, web = (
        grounds.question,
        grounds.passages,
        grounds.history,
        grounds.web,
    )
    turns, found, sources = list(history), list(passages), list(web)

    render = partial(  # the lists shrink in place below; each render sees what is left
        build_messages,
        question,
        found,
        turns,
        language=language,
        instructions_as=instructions_as,  # type: ignore[arg-type]
        passage_chars=passage_chars,
        web=sources,
    )

    while True:
        messages = render()
        tokens = await counter.messages(messages)
        if tokens <= budget.prompt:
            return Fitted(
                messages,
                turns,
                found,
                sources,
                tokens,
                dropped_turns=len(history) - len(turns),
                dropped_passages=len(passages) + len(web) - len(found) - len(sources),
            )
        if len(turns) > 1:
            turns.pop(0)
        elif sources:
            sources.pop()
        elif len(found) > 1:
            found.pop()
        elif turns:
            turns.pop(0)
        else:  # the question with its best passage (or alone) does not fit: no useful answer
            raise QuestionTooLong(tokens, budget.prompt)
