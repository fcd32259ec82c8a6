"""engine.answer.budget: counting, and which parts of a prompt give way first."""

from __future__ import annotations

import pytest

from engine.answer.budget import QuestionTooLong, fit
from engine.answer.followup import combined, refers_back
from engine.answer.prompt import HistoryTurn
from engine.answer.turn import Grounds
from engine.llm.probe import PER_MESSAGE, PER_PROMPT, Budget, TokenCounter
from engine.text import estimate_tokens
from knowledge import Passage
from tests.fakes.sglang import tokenize


def passage(n: int, words: int = 50) -> Passage:
    return Passage(
        text=" ".join(f"p{n}w{i}" for i in range(words)),
        title=f"Doc {n}",
        source="s",
        location=f"doc{n}.md",
        section="",
        score=1.0 - n / 100,
        chunk_id=f"c{n}",
    )


async def fake_count(text: str) -> int:
    return len(tokenize(text))


@pytest.mark.parametrize(
    "text",
    [
        "我的VPN连不上了，重置以后还是不行。" * 20,
        "How do I reset my VPN connection after the password change?",
        "VPN 接続をリセットするには？ 🙂🙂",
        "Как сбросить VPN-подключение?",
    ],
)
def test_the_estimate_errs_high(text: str) -> None:
    """Above the fake's tokenizer (2 per CJK character, 1 per word) and ~1.8 per Chinese
    character, the most a small-vocabulary tokenizer measured here."""
    assert estimate_tokens(text) >= len(tokenize(text))
    chinese = sum(1 for c in text if "\u4e00" <= c <= "\u9fff")
    assert estimate_tokens(text) >= 1.8 * chinese


async def test_the_counter_asks_the_server_once_per_text_and_falls_back_for_good() -> None:
    asked: list[str] = []

    async def remote(text: str) -> int:
        asked.append(text)
        if text == "boom":
            raise ConnectionError("tokenizer gone")
        return 7

    counter = TokenCounter(remote)
    assert await counter.count("instructions") == 7
    assert await counter.count("instructions") == 7 and asked == ["instructions"]
    assert (
        await counter.messages([{"role": "user", "content": "x"}]) == PER_PROMPT + PER_MESSAGE + 7
    )
    assert await counter.count("boom") == estimate_tokens("boom") and not counter.exact
    assert await counter.count("new text") == estimate_tokens("new text")
    assert asked == ["instructions", "x", "boom"]


async def fitted(context: int, turns: int, passages: int, question: str = "q?") -> tuple[int, int]:
    grounds = Grounds(
        question,
        [passage(n) for n in range(1, passages + 1)],
        [HistoryTurn(f"turn {n} " + "x " * 60, "answer " * 20) for n in range(turns)],
    )
    result = await fit(
        grounds,
        budget=Budget(context, 100),
        counter=TokenCounter(fake_count),
        language="en",
        instructions_as="user",
        passage_chars=1200,
    )
    assert result.prompt_tokens <= Budget(context, 100).prompt
    kept_turns = [t.question.split()[1] for t in result.history]
    assert kept_turns == [str(n) for n in range(turns - len(kept_turns), turns)]  # newest kept
    assert [p.chunk_id for p in result.passages] == [
        f"c{n}" for n in range(1, len(result.passages) + 1)
    ]
    return len(result.history), len(result.passages)


async def test_oldest_history_goes_first_then_the_lowest_passages_then_the_last_turn() -> None:
    assert await fitted(100_000, 4, 5) == (4, 5)
    assert await fitted(900, 4, 5) == (3, 5)  # the oldest turn first
    assert await fitted(700, 4, 5) == (1, 5)  # history down to the last turn before any passage
    assert await fitted(600, 4, 5) == (1, 3)  # then the lowest passages
    assert await fitted(500, 4, 5) == (1, 1)
    assert await fitted(440, 4, 5) == (0, 1)  # the last turn before the best passage


async def test_a_question_that_does_not_fit_with_its_best_passage_is_refused() -> None:
    with pytest.raises(QuestionTooLong) as err:
        await fitted(400, 2, 3, question="why " * 100)
    assert err.value.tokens > err.value.limit == Budget(400, 100).prompt


@pytest.mark.parametrize(
    ("question", "follow_up"),
    [
        ("And if that does not work?", True),
        ("What about on a Mac?", True),
        ("Mac?", True),
        ("那如果还是不行呢？", True),
        ("How many days of annual leave do I get?", False),
        ("What is the best pizza topping for a volcano picnic?", False),
        ("年假有多少天，怎么申请调休？", False),
    ],
)
def test_only_questions_that_refer_back_are_searched_with_the_last_one(
    question: str, follow_up: bool
) -> None:
    assert refers_back(question) is follow_up
    query = combined(question, ["How do I reset my VPN?"])
    assert query.how == ("combined" if follow_up else "bare")
    assert query.texts[-1] == question
