"""The terminal as a ReplyChannel: `teambot ask` and `teambot chat` stream answers here."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.text import Text

from engine.catalog import phrase
from engine.messages import Answer, EscalationNotice, Outcome
from engine.ports import ChannelLimits

_STYLE = {
    Outcome.ANSWERED: "green",
    Outcome.RETRIEVAL_ONLY: "yellow",
    Outcome.NO_KNOWLEDGE: "bright_black",
    Outcome.FAILED: "red",
    Outcome.HANDED_OFF: "cyan",
    Outcome.TRUNCATED: "yellow",
    Outcome.INTERRUPTED: "red",
    Outcome.TIMED_OUT: "yellow",
    Outcome.TOO_LONG: "yellow",
}


class WarningLines(logging.Handler):
    """Warnings for `ask` and `chat`: one tidy line each, held while an answer streams and
    printed after it, never in the middle of it."""

    def __init__(self, console: Console, redact: Callable[[str], str] | None = None) -> None:
        super().__init__(logging.WARNING)
        self._console = console
        self._redact = redact
        self._held: list[str] = []
        self.holding = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = " ".join(record.getMessage().split())
            text = self._redact(text) if self._redact else text
            line = text if len(text) <= 200 else text[:199] + "…"
            if self.holding:
                if line not in self._held:
                    self._held.append(line)
            else:
                self._print(line)
        except Exception:  # a log line must never break the answer
            self.handleError(record)

    def show_held(self) -> None:
        """The answer is done: print what was held (not `release`, the Handler's lock)."""
        self.holding = False
        for line in self._held:
            self._print(line)
        self._held.clear()

    def _print(self, line: str) -> None:
        self._console.print(
            f"[yellow]warning[/yellow] [dim]{escape(line)}[/dim]",
            highlight=False,
            no_wrap=True,
            overflow="ellipsis",
        )


_lines: WarningLines | None = None


def tidy_warnings(console: Console, redact: Callable[[str], str] | None = None) -> None:
    """Replace the root logger's stream output with `WarningLines` on `console`."""
    global _lines
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, logging.StreamHandler):
            root.removeHandler(handler)
    _lines = WarningLines(console, redact)
    root.addHandler(_lines)


class ConsoleReplyChannel:
    """Shows the answer growing in place, then the final text with numbered sources."""

    def __init__(self, console: Console, *, started: float | None = None) -> None:
        self._console = console
        self._live: Live | None = None
        self._started = started if started is not None else time.monotonic()
        self.first_visible: float | None = None

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits(max_chars=100_000, can_edit=True)

    async def open(self, language: str = "en") -> None:
        if _lines is not None:
            _lines.holding = True
        self._live = Live(Text("…", style="dim"), console=self._console, refresh_per_second=12)
        self._live.start()

    async def update(self, text: str) -> None:
        if self.first_visible is None:
            self.first_visible = time.monotonic() - self._started
        if self._live is not None:
            self._live.update(Text(text))

    async def finish(self, answer: Answer) -> None:
        if self._live is not None:
            self._live.update(Text(""))
            self._live.stop()
            self._live = None
        if self.first_visible is None:
            self.first_visible = time.monotonic() - self._started
        self._console.print(Markdown(answer.text))
        if answer.citations:
            title = phrase("sources", answer.language)
            self._console.print(f"\n[bold]{title}[/bold]")
            for citation in answer.citations:
                section = f" — {citation.section}" if citation.section else ""
                label = escape(f"  [{citation.number}] {citation.title}{section}")
                self._console.print(
                    f"{label}  [dim]{escape(citation.location)}[/dim]", highlight=False
                )
        style = _STYLE.get(answer.outcome, "white")
        self._console.print(
            f"[{style}]{answer.outcome.value}[/{style}] [dim]· {answer.timings.total:.1f} s[/dim]"
        )
        if _lines is not None:
            _lines.show_held()

    async def post_escalation(self, notice: EscalationNotice) -> None:
        self._console.print(f"[cyan]escalated to a person: {notice.trigger}[/cyan]")
