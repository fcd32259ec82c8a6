from __future__ import annotations

from engine.answer.prompt import (
    INSTRUCTIONS,
    HistoryTurn,
    build_messages,
    numbering,
    render_turn,
    trim_history,
)
from knowledge import Passage


def passage(title: str, text: str, section: str = "") -> Passage:
    return Passage(
        text=text,
        title=title,
        source="s",
        location=f"{title}.md",
        section=section,
        score=0.8,
        chunk_id=title,
    )


def test_instructions_lead_the_first_user_turn_and_history_keeps_order() -> None:
    history = [HistoryTurn("q1", "a1"), HistoryTurn("q2", "a2")]
    messages = build_messages("q3", [passage("VPN", "reset it")], history, language="en")
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[0]["content"] == f"{INSTRUCTIONS}\n\nq1"
    assert messages[1]["content"] == "a1"
    assert "[1] VPN\nreset it" in messages[-1]["content"]
    assert "Question: q3" in messages[-1]["content"]


def test_next_turn_shares_the_whole_earlier_conversation_as_prefix() -> None:
    """What the prefix cache needs: turn N+1's messages start with turn N's history unchanged."""
    first = build_messages("q2", [passage("A", "x")], [HistoryTurn("q1", "a1")], language="en")
    second = build_messages(
        "q3", [passage("B", "y")], [HistoryTurn("q1", "a1"), HistoryTurn("q2", "a2")], language="en"
    )
    assert second[:2] == first[:2]
    assert second[2] == {"role": "user", "content": "q2"}


def test_system_mode_puts_instructions_in_a_system_message() -> None:
    messages = build_messages("q", [], [], language="zh", instructions_as="system")
    assert messages[0] == {"role": "system", "content": INSTRUCTIONS}
    assert "Chinese" in messages[-1]["content"]


def test_history_trimmed_to_the_newest_turns_that_fit() -> None:
    turns = [HistoryTurn("old " * 100, "x"), HistoryTurn("mid", "y"), HistoryTurn("new", "z")]
    kept = trim_history(turns, max_tokens=10)
    assert [t.question for t in kept] == ["mid", "new"]


def test_long_passages_are_clipped() -> None:
    messages = build_messages("q", [passage("A", "w" * 5000)], [], language="en", passage_chars=100)
    assert "w" * 100 + "…" in messages[-1]["content"]
    assert "w" * 101 not in messages[-1]["content"]


def test_passages_keep_their_number_across_the_thread_and_are_not_repeated() -> None:
    vpn, wifi, leave = passage("VPN", "reset it"), passage("WiFi", "join it"), passage("Leave", "x")
    first = render_turn("q1", [vpn, wifi], language="en")
    assert "[1] VPN\nreset it" in first and "[2] WiFi\njoin it" in first
    second = render_turn("q2", [wifi, leave], language="en", earlier=[first])
    assert "[2] WiFi (given above)" in second and "join it" not in second
    assert "[3] Leave\nx" in second
    numbers, above = numbering([wifi, leave], [first], 1200)
    assert numbers == [2, 3] and above == {2}
    # once the turn that gave it is no longer in the prompt, the passage is given again
    assert "[1] WiFi\njoin it" in render_turn("q3", [wifi], language="en")
