"""The answer's pure parts: which sources it cites (by the numbers in its text), and the notice
when the web was asked for but could not be used. No I/O."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import urlsplit

from engine.language import phrase
from engine.messages import Answer, Citation
from engine.prompt import section
from engine.web import WebReport, WebSource
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
