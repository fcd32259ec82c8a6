"""The answer's pure parts: which sources it cites (by the numbers in its text), the notice
when the web was asked for but could not be used, and the answers built without the model's
words or from them (retrieval only, too long, the streamed text). No I/O."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from engine.answer.budget import Fitted
from engine.answer.prompt import first_web_number, heading, numbering, render_turn, section
from engine.answer.stream import Streamed
from engine.catalog import phrase
from engine.messages import Answer, Citation, Outcome, Timings, Usage
from engine.text import clip
from engine.weblookup import WebReport, WebSource
from knowledge import Passage

_CITE = re.compile(r"\[(\d{1,2})\]")


def citation(number: int, passage: Passage) -> Citation:
    return Citation(
        number=number,
        title=passage.title,
        source=passage.source,
        location=passage.location,
        section=section(passage),
    )


def web_citation(number: int, source: WebSource) -> Citation:
    return Citation(
        number=number,
        title=source.title,
        source=urlsplit(source.url).hostname or source.url,
        location=source.url,
        kind="web",
        fetched_at=source.fetched_at,
    )


def citations(
    text: str,
    passages: Sequence[Passage],
    web: Sequence[WebSource] = (),
    numbers: Sequence[int] = (),
    first_web: int | None = None,
) -> tuple[Citation, ...]:
    """The sources the answer cites by number, and only those: an answer that cites nothing
    lists nothing. `numbers`: the passages' numbers in the prompt (default 1, 2, …); web
    results are numbered from `first_web` (default: after the passages)."""
    numbers = list(numbers) or list(range(1, len(passages) + 1))
    first = first_web or max(numbers, default=0) + 1
    sources = {n: citation(n, p) for n, p in zip(numbers, passages, strict=True)}
    sources |= {first + i: web_citation(first + i, w) for i, w in enumerate(web)}
    cited = sorted({int(n) for n in _CITE.findall(text)} & sources.keys())
    return tuple(sources[n] for n in cited)


def all_citations(
    passages: Sequence[Passage], web: Sequence[WebSource] = ()
) -> tuple[Citation, ...]:
    """Every source, numbered as shown (a retrieval-only answer quotes them all)."""
    shown = "".join(f"[{n}]" for n in range(1, len(passages) + len(web) + 1))
    return citations(shown, passages, web)


def with_web_notice(answer: Answer, web: WebReport | None) -> Answer:
    """Say in the answer when the web was asked for but could not be used."""
    if web is None:
        return answer
    if web.off:
        key = "web_off"
    elif web.unavailable:
        key = "web_unavailable"
    elif web.refused and not web.sources:
        key = "web_refused"
    else:
        return answer
    notice = phrase(key, answer.language)
    return replace(
        answer,
        text=f"{answer.text}\n\n{notice}",
        notice=f"{answer.notice}\n{notice}".strip(),
    )


def too_long(tokens: int, limit: int, language: str, timings: Timings) -> Answer:
    """The question does not fit the model's context, even with the history left out."""
    notice = phrase("too_long_for_model", language, tokens=tokens, limit=max(limit, 0))
    return Answer(
        text=notice, outcome=Outcome.TOO_LONG, language=language, timings=timings, notice=notice
    )


def retrieval_only(
    passages: Sequence[Passage],
    language: str,
    timings: Timings,
    usage: Usage,
    *,
    web: Sequence[WebSource] = (),
    model_configured: bool = True,
) -> Answer:
    """The passages (and web results) themselves, numbered, under a notice that says why."""
    # no model configured is a setting, not an outage: say so plainly
    notice = phrase("retrieval_only" if model_configured else "model_off", language)
    excerpts = []
    for number, passage in enumerate(passages, start=1):
        excerpts.append(f"[{number}] {heading(passage)}\n{_excerpt(passage.text)}")
    for number, source in enumerate(web, start=len(passages) + 1):
        excerpts.append(f"[{number}] {source.title} — {source.url} (web)\n{_excerpt(source.text)}")
    return Answer(
        text=notice + "\n\n" + "\n\n".join(excerpts),
        outcome=Outcome.RETRIEVAL_ONLY,
        language=language,
        citations=all_citations(passages, web),
        usage=usage,
        timings=timings,
        notice=notice,
    )


def from_stream(
    streamed: Streamed,
    fitted: Fitted,
    question: str,
    language: str,
    timings: Timings,
    *,
    passage_chars: int,
) -> Answer:
    """The streamed text as the answer: its notice, the sources it cites, the turn as sent."""
    assert streamed.outcome is not None
    passages, web = fitted.passages, fitted.web
    earlier = [turn.question for turn in fitted.history]
    sent = render_turn(
        question, passages, language=language, passage_chars=passage_chars, web=web,
        earlier=earlier,
    )  # fmt: skip
    numbers, _ = numbering(passages, earlier, passage_chars)
    first_web = first_web_number(numbers, earlier)
    text, notice = streamed.text, streamed.notice
    return Answer(
        text=f"{text}\n\n{notice}" if notice else text,
        outcome=streamed.outcome,
        language=language,
        reasoning=streamed.reasoning,
        citations=citations(text, passages, web, numbers, first_web),
        usage=streamed.usage,
        timings=replace(
            timings, first_token=streamed.first_token, first_visible=streamed.first_visible
        ),
        notice=notice,
        prompt=sent,
        model_text=text,
    )


def _excerpt(text: str) -> str:
    return clip(re.sub(r"\n\s*\n+", "\n", text.strip()), 500)
