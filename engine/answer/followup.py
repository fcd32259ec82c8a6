"""Follow-ups made standalone before retrieval.

"And if that does not work?" finds nothing useful on its own; with the conversation it is a
question about the VPN. When the model is up (and does not think at length first) it rewrites the
follow-up, through the same client and breaker as the answers, and the rewrite is searched beside
the deterministic queries below (a weak model's rewrite can miss; merged, it cannot take away
what they find); otherwise, or when it fails or takes too long, a question that reads as a follow-up (a back-reference such as "that", "它", or
only a few words) is searched together with the previous question and on its own, merged by
best score; any other question is searched as it is, so a new topic is not dragged back.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass

from engine.llm import LLMClient, LLMError
from engine.text import clip

log = logging.getLogger(__name__)

REWRITE = """Rewrite the follow-up as one standalone question that can be understood without \
the conversation. Keep its language and meaning; replace words such as "it", "that", "这个", \
"那" with what they refer to. Reply with the question only.

{turns}
Follow-up: {question}
Standalone question:"""


# Words that lean on what was said before; a question without them (and not very short) is
# taken as a new topic by the deterministic rule, so it is not searched with the last one.
_REFERS_BACK = re.compile(
    r"(?i)^\s*(and|but|or|so|also|what about|how about|then)\b"
    r"|\b(it|its|one|ones|that|this|these|those|they|them|there|else|same|again|instead|too)\b"
    r"|[那这它还呢另同刚该]"
)


def refers_back(question: str) -> bool:
    """Whether `question` reads as a follow-up: a back-reference, or only a few words."""
    words = len(question.split()) + len(re.findall(r"[\u4e00-\u9fff]", question)) // 2
    return words <= 4 or bool(_REFERS_BACK.search(question))


@dataclass(frozen=True, slots=True)
class Query:
    """What to search for: `texts`, merged by best score; `how`: bare | model | combined."""

    texts: tuple[str, ...]
    how: str


def combined(question: str, earlier: Sequence[str]) -> Query:
    """The deterministic rewrite: the previous question with the follow-up, and the follow-up,
    when the question reads as a follow-up (`refers_back`)."""
    if not earlier or not refers_back(question):
        return Query((question,), "bare")
    return Query((f"{earlier[-1]}\n{question}", question), "combined")


async def standalone(
    question: str,
    earlier: Sequence[tuple[str, str]],
    llm: LLMClient | None,
    *,
    seconds: float,
) -> Query:
    """The query for `question` given `earlier` (question, answer) pairs, oldest first."""
    asked = [q for q, _ in earlier]
    if not earlier:
        return Query((question,), "bare")
    if llm is None or llm.breaker_open or await _thinks(llm):
        return combined(question, asked)
    turns = "\n".join(
        f"Earlier question: {clip(q, 400)}\nEarlier answer: {clip(a, 400)}" for q, a in earlier[-2:]
    )
    prompt = REWRITE.format(turns=turns, question=question)
    try:
        async with asyncio.timeout(seconds):
            text, _, _ = await llm.complete([{"role": "user", "content": prompt}], max_tokens=200)
    except (LLMError, TimeoutError) as error:
        log.info("follow-up rewrite failed, searching with the previous question: %s", error)
        return combined(question, asked)
    lines = [line.strip().strip("\"'“”「」") for line in text.strip().splitlines() if line.strip()]
    rewritten = lines[0].removeprefix("Standalone question:").strip() if lines else ""
    fallback = combined(question, asked)
    if not rewritten or len(rewritten) > 4 * len(question) + 400:
        return fallback
    # the rewrite joins the deterministic searches, never replaces them: a small model's rewrite
    # can be off topic ("The previous answer is a response to…"), and alone it would leave the
    # answer without grounding; merged by best score, it can only add what it finds
    texts = (rewritten, *(t for t in fallback.texts if t != rewritten))
    return Query(texts, "model")


async def _thinks(llm: LLMClient) -> bool:
    """A model that reasons first would spend seconds on a rewrite: the server tells."""
    info = await llm.server_info()
    return bool(info.reasoning_parser) or bool(info.opens_think)
