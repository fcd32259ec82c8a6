"""When a thread goes to a human: the asker's own words first (more triggers come with policy)."""

from __future__ import annotations

import re

# Whole-message requests for a person, in Chinese and English. Kept strict on purpose:
# "how do I add a human user?" is a question, "human please" is a request.
_ASKS_FOR_HUMAN = re.compile(
    r"^\s*(?:/human|/agent|转人工|人工客服|人工服务|找人工|找人|真人|"
    r"(?:please\s+)?(?:(?:talk|speak)\s+to\s+)?(?:a\s+)?(?:human|person|real person|agent)"
    r"(?:\s+please)?)\s*[.!！。?？]*\s*$",
    re.IGNORECASE,
)


def asks_for_human(text: str) -> bool:
    """True when the whole message is a request to talk to a person."""
    return bool(_ASKS_FOR_HUMAN.match(text))
