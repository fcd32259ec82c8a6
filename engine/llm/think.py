"""Keeps a model's thinking out of the answer when the server does not separate it."""

from __future__ import annotations

OPEN, CLOSE = "<think>", "</think>"


class ThinkSplitter:
    """Routes `<think>…</think>` text in streamed content to reasoning; content never gets it.

    Rule, in order:
    - Text that starts (after whitespace) with `<think>` is reasoning up to `</think>`.
    - hold=True (a model whose template opens `<think>` itself, e.g. DeepSeek-R1): content is held
      back until `</think>` shows up (everything before it was reasoning) or the stream ends: then
      it was all content, unless max_tokens cut it off (still thinking: reasoning). Correct in
      both cases, but a non-thinking answer arrives in one piece at the end.
    - hold=False: text that does not open with `<think>` streams as content immediately. If an
      orphan `</think>` appears later, what was already shown cannot be taken back: the tag is
      dropped, the text still buffered goes to reasoning, and `orphan_close` is set so the caller
      can switch to hold=True for the next requests.
    Tags split across chunks ("</th" + "ink>") are held until disambiguated. Leading whitespace of
    the answer is dropped.
    """

    def __init__(self, *, hold: bool):
        self._hold = hold
        self._state = "start"  # start | think | held | answer | plain
        self._buf = ""
        self._lstrip = True
        self.orphan_close = False

    def separate(self) -> None:
        """The server sent reasoning_content: content needs no tag handling any more."""
        if self._state in ("start", "held"):
            self._state = "plain"

    def feed(self, text: str) -> tuple[str, str]:
        """Returns (content, reasoning) that can be released now."""
        self._buf += text
        content, reasoning = "", ""
        if self._state == "start":
            head = self._buf.lstrip()
            if head.startswith(OPEN):
                self._state, self._buf = "think", head[len(OPEN) :]
            elif OPEN.startswith(head):
                return "", ""
            else:
                self._state = "held" if self._hold else "answer"
        if self._state in ("think", "held"):
            at = self._buf.find(CLOSE)
            if at < 0:
                if self._state == "held":
                    return "", ""
                cut = len(self._buf) - _partial(self._buf, CLOSE)
                reasoning, self._buf = self._buf[:cut], self._buf[cut:]
                return "", reasoning
            reasoning, self._buf = self._buf[:at], self._buf[at + len(CLOSE) :]
            self._state = "plain"
        if self._state == "answer":
            at = self._buf.find(CLOSE)
            if at >= 0:
                self.orphan_close = True
                reasoning += self._buf[:at]
                self._buf, self._state = self._buf[at + len(CLOSE) :], "plain"
            else:
                cut = len(self._buf) - _partial(self._buf, CLOSE)
                content, self._buf = self._buf[:cut], self._buf[cut:]
        if self._state == "plain":
            content, self._buf = content + self._buf, ""
        return self._strip(content), reasoning

    def finish(self, *, truncated: bool = False) -> tuple[str, str]:
        """The stream ended: release what is held. An unclosed `<think>` stays reasoning, and so
        does held text when max_tokens cut it off (truncated): the model was still thinking."""
        rest, self._buf = self._buf, ""
        if self._state == "think" or (self._state == "held" and truncated):
            return "", rest
        return self._strip(rest), ""

    def _strip(self, content: str) -> str:
        if self._lstrip and content:
            content = content.lstrip()
            self._lstrip = not content
        return content


def _partial(text: str, tag: str) -> int:
    """Length of the longest suffix of text that is a proper prefix of tag."""
    for k in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:k]):
            return k
    return 0
