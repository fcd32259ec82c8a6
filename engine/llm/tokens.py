"""Token counts and budgets of the model server: counts from its own tokenizer when it offers
one (`POST /tokenize`, remembered per text), else a conservative per-script estimate; the budget
is the model's context minus what the answer needs (engine/answer/budget.py fits a prompt to it).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from engine.text import estimate_tokens as estimate

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
