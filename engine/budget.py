"""Token budgets: the prompt is fitted to the model's context minus what the answer needs.

Counts come from the model server's own tokenizer when it offers one (`POST /tokenize`,
remembered per text so the fixed instructions and earlier turns are counted once), else from a
conservative per-script estimate. What gives way, in order: the oldest history turns (down to
the last one), web results, the lowest-ranked passages (down to the best one), then the last
turn; a question that does not fit with its best passage is refused with its own answer.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from engine.prompt import HistoryTurn, build_messages
from engine.text import estimate_tokens as estimate
from engine.web.types import WebSource
from knowledge import Passage

PER_MESSAGE = 8  # chat-template tokens around each message (role markers, separators)
PER_PROMPT = 16  # the generation prompt and BOS


class TokenCounter:
    """Counts with `remote` (the server's tokenizer) when given, remembering the last few
    thousand texts; falls back to `estimate` for good when the remote count fails."""

    def __init__(
        self, remote: Callable[[str], Awaitable[int]] | None = None, *, size: int = 4096
    ) -> None:
        self._remote = remote
        self._size = size
        self._known: OrderedDict[str, int] = OrderedDict()
        self.exact = remote is not None

    async def count(self, text: str) -> int:
        if not text:
            return 0
        if (known := self._known.get(text)) is not None:
            self._known.move_to_end(text)
            return known
        if self._remote is None:
            return estimate(text)
        try:
            n = await self._remote(text)
        except Exception:  # any failure: estimate from now on rather than fail the answer
            self._remote, self.exact = None, False
            return estimate(text)
        self._known[text] = n
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return n

    async def messages(self, messages: Sequence[dict[str, str]]) -> int:
        """Tokens of a chat prompt: its messages' contents plus the template around them."""
        total = PER_PROMPT
        for message in messages:
            total += PER_MESSAGE + await self.count(message["content"])
        return total


@dataclass(frozen=True, slots=True)
class Budget:
    context: int  # tokens one request may hold
    completion: int  # tokens kept for the answer (thinking included)

    @property
    def prompt(self) -> int:
        """Tokens the prompt may use, less a small margin for the template's surprises."""
        return self.context - self.completion - max(16, self.context // 50)


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
    question: str,
    passages: Sequence[Passage],
    history: Sequence[HistoryTurn],
    web: Sequence[WebSource],
    *,
    budget: Budget,
    counter: TokenCounter,
    language: str,
    instructions_as: str,
    passage_chars: int,
) -> Fitted:
    """The prompt for this turn, cut to `budget.prompt` tokens (see the module docstring)."""
    turns, found, sources = list(history), list(passages), list(web)

    def render() -> list[dict[str, str]]:
        return build_messages(
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
