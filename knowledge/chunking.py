"""Split documents into chunks that fit the embedding model (pure functions, no IO).

Markdown is split by headings first; every chunk belongs to exactly one section and carries its
heading path ("Handbook > VPN > Reset"). Inside a section, text is packed sentence by sentence
(English `.!?;` followed by whitespace, Chinese `。！？；`) up to `chunk_tokens` tokens, counted
by the embedding model's own tokenizer. Consecutive chunks of a section share up to
`chunk_overlap` tokens of whole trailing sentences. A sentence longer than the budget on its own
is hard-split by words (or characters for CJK text).

Chunk text is the document's own text, unchanged. What gets embedded is `embed_text()`: the
title and section path on a first line, then the chunk, so that a chunk such as "1. Quit the
client …" is still found by "How do I reset the VPN?". The budget leaves room for that line:
the model reads 256 wordpieces, chunks default to 200.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from knowledge.types import Chunk

TokenCounter = Callable[[str], int]

SECTION_SEPARATOR = " > "

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^[ \t]*(```|~~~)")
# A line that stands on its own: list item, numbered step, table row, quote.
_BLOCK_LINE = re.compile(r"^[ \t]*([-*+][ \t]|\d{1,3}[.)][ \t]|\||>)")
_MARKER = re.compile(r"(?:\d{1,3}|[A-Za-z])[.)]|[-*+]")
_CLOSERS = "」』”’\"')）】"
_SENTENCE_END = re.compile(
    rf"[。！？；]+[{_CLOSERS}]*[ \t\n]*"  # Chinese: no space needed after the mark
    rf"|[.!?;]+[{_CLOSERS}]*(?:[ \t\n]+|$)"  # English: only before whitespace (not 3.5, a?b=1)
)
_CJK_CLASS = r"[\u2e80-\u9fff\u3000-\u303f\uf900-\ufaff\uff00-\uffef]"
_CJK = re.compile(_CJK_CLASS)
# Atoms for a hard split: one CJK character, or one word with its trailing spaces.
_ATOM = re.compile(rf"{_CJK_CLASS}|[^\s]+?(?={_CJK_CLASS}|\s|$)\s*|\s+")


@dataclass(frozen=True, slots=True)
class Section:
    """The body text under one heading path."""

    path: str
    text: str


@dataclass(frozen=True, slots=True)
class _Unit:
    """A sentence (or an unsplittable block) and whether a paragraph break precedes it."""

    text: str
    tokens: int
    new_paragraph: bool


def markdown_title(text: str) -> str | None:
    """The first level-1 heading of a Markdown text, or None."""
    in_fence = False
    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        match = None if in_fence else _HEADING.match(line)
        if match and len(match.group(1)) == 1:
            return match.group(2).strip()
    return None


def markdown_sections(text: str) -> list[Section]:
    """Split Markdown by headings (ignoring `#` inside code fences); empty sections are dropped."""
    sections: list[Section] = []
    stack: list[tuple[int, str]] = []
    body: list[str] = []
    in_fence = False

    def flush() -> None:
        joined = "\n".join(body).strip()
        if joined:
            sections.append(Section(SECTION_SEPARATOR.join(t for _, t in stack), joined))
        body.clear()

    for line in text.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
        match = None if in_fence else _HEADING.match(line)
        if match is None:
            body.append(line)
            continue
        flush()
        level = len(match.group(1))
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, match.group(2).strip()))
    flush()
    return sections


def split_sentences(text: str) -> list[str]:
    """Split one paragraph into sentences at English and Chinese sentence ends."""
    sentences: list[str] = []
    start = 0
    for match in _SENTENCE_END.finditer(text):
        if match.end() == match.start():
            continue
        piece = text[start : match.end()].strip()
        if _MARKER.fullmatch(piece):
            continue  # "5. If sign-in fails": a list marker, not a sentence
        if piece:
            sentences.append(piece)
        start = match.end()
    rest = text[start:].strip()
    if rest:
        sentences.append(rest)
    return sentences


def hard_split(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[str]:
    """Cut a text that is too long on its own into pieces of at most `max_tokens` tokens."""
    pieces: list[str] = []
    current = ""
    estimate = 0
    for atom in _atoms(text, count_tokens, max_tokens):
        n = count_tokens(atom)
        over = estimate + n > max_tokens or (
            estimate + n > max_tokens * 0.9 and count_tokens(current + atom) > max_tokens
        )
        if current.strip() and over:
            pieces.append(current.strip())
            current, estimate = atom.lstrip(), n
        else:
            current, estimate = current + atom, estimate + n
    if current.strip():
        pieces.append(current.strip())
    return pieces


def chunk_markdown(
    text: str, *, count_tokens: TokenCounter, chunk_tokens: int = 200, chunk_overlap: int = 40
) -> list[Chunk]:
    """Chunk a Markdown document section by section."""
    chunks: list[Chunk] = []
    for section in markdown_sections(text):
        for body in _pack(
            _units(section.text, count_tokens, chunk_tokens),
            count_tokens,
            chunk_tokens,
            chunk_overlap,
        ):
            chunks.append(Chunk(body, section.path, len(chunks), count_tokens(body)))
    return chunks


def chunk_text(
    text: str, *, count_tokens: TokenCounter, chunk_tokens: int = 200, chunk_overlap: int = 40
) -> list[Chunk]:
    """Chunk plain text (no sections) by paragraphs and sentences."""
    bodies = _pack(
        _units(text, count_tokens, chunk_tokens), count_tokens, chunk_tokens, chunk_overlap
    )
    return [Chunk(body, "", i, count_tokens(body)) for i, body in enumerate(bodies)]


def embed_text(title: str, chunk: Chunk) -> str:
    """The text to embed for a chunk: title and section path as a first line, then the chunk."""
    path = chunk.section
    if title and not path.startswith(title):
        path = f"{title}{SECTION_SEPARATOR}{path}" if path else title
    return f"{path}\n{chunk.text}" if path else chunk.text


def _paragraphs(text: str) -> Iterator[tuple[str, bool]]:
    """Yield (paragraph, is_block): blank-line paragraphs; list items, table rows and code
    fences are kept as their own blocks and not sentence-split."""
    lines: list[str] = []
    fence: list[str] | None = None
    for line in text.splitlines():
        if fence is not None:
            fence.append(line)
            if _FENCE.match(line):
                yield "\n".join(fence), True
                fence = None
            continue
        if _FENCE.match(line):
            if lines:
                yield _join_lines(lines), False
                lines = []
            fence = [line]
        elif not line.strip():
            if lines:
                yield _join_lines(lines), False
                lines = []
        elif _BLOCK_LINE.match(line):
            if lines:
                yield _join_lines(lines), False
            lines = [line.rstrip()]
        elif lines and _BLOCK_LINE.match(lines[0]) and line[:1] in " \t":
            lines.append(line)  # a wrapped list item continues
        else:
            if lines and _BLOCK_LINE.match(lines[0]):
                yield _join_lines(lines), False
                lines = []
            lines.append(line)
    if fence is not None:
        yield "\n".join(fence), True
    if lines:
        yield _join_lines(lines), False


def _join_lines(lines: list[str]) -> str:
    """Join wrapped lines: with a space between words, directly between CJK characters."""
    out = lines[0].rstrip()
    for line in lines[1:]:
        line = line.strip()
        if not line:
            continue
        glue = "" if _CJK.match(out[-1:]) and _CJK.match(line[:1]) else " "
        out += glue + line
    return out


def _units(text: str, count_tokens: TokenCounter, max_tokens: int) -> list[_Unit]:
    units: list[_Unit] = []
    for paragraph, is_block in _paragraphs(text):
        sentences = [paragraph] if is_block else split_sentences(paragraph)
        first = True
        for sentence in sentences:
            tokens = count_tokens(sentence)
            pieces = (
                [sentence]
                if tokens <= max_tokens
                else hard_split(sentence, count_tokens, max_tokens)
            )
            for piece in pieces:
                n = tokens if len(pieces) == 1 else count_tokens(piece)
                units.append(_Unit(piece, n, first))
                first = False
    return units


def _join_units(units: list[_Unit]) -> str:
    out = ""
    for i, unit in enumerate(units):
        if i == 0:
            out = unit.text
        elif unit.new_paragraph:
            out += "\n" + unit.text
        else:
            glue = "" if _CJK.match(out[-1:]) and _CJK.match(unit.text[:1]) else " "
            out += glue + unit.text
    return out


def _pack(
    units: list[_Unit], count_tokens: TokenCounter, max_tokens: int, overlap: int
) -> list[str]:
    """Greedily pack units into chunks, carrying whole trailing units over as overlap."""
    chunks: list[str] = []
    current: list[_Unit] = []
    fresh = 0  # units in `current` that are not overlap from the previous chunk
    for unit in units:
        if current and _fits(current, unit, count_tokens, max_tokens):
            current.append(unit)
            fresh += 1
            continue
        if fresh:
            chunks.append(_join_units(current))
        current = [*_tail(current, overlap, max_tokens - unit.tokens), unit]
        fresh = 1
    if fresh:
        chunks.append(_join_units(current))
    return chunks


def _fits(current: list[_Unit], unit: _Unit, count_tokens: TokenCounter, max_tokens: int) -> bool:
    estimate = sum(u.tokens for u in current) + unit.tokens
    if estimate > max_tokens:
        return False
    # Joining can merge tokens differently; check exactly near the limit.
    return estimate < max_tokens * 0.9 or count_tokens(_join_units([*current, unit])) <= max_tokens


def _tail(units: list[_Unit], overlap: int, room: int) -> list[_Unit]:
    """The longest run of whole trailing units within `overlap` tokens (and the room left)."""
    budget = min(overlap, room)
    tail: list[_Unit] = []
    used = 0
    for unit in reversed(units):
        if used + unit.tokens > budget:
            break
        tail.insert(0, unit)
        used += unit.tokens
    return tail


def _atoms(text: str, count_tokens: TokenCounter, max_tokens: int) -> Iterator[str]:
    for atom in _ATOM.findall(text):
        if count_tokens(atom) <= max_tokens:
            yield atom
            continue
        # A single "word" longer than the budget (a URL, base64): cut by characters.
        piece = ""
        for char in atom:
            if piece and count_tokens(piece + char) > max_tokens:
                yield piece
                piece = ""
            piece += char
        if piece:
            yield piece


def chunk_pdf(
    text: str, *, count_tokens: TokenCounter, chunk_tokens: int = 200, chunk_overlap: int = 40
) -> list[Chunk]:
    """Chunk PDF text page by page (pages separated by form feeds); the section is "Page N"."""
    chunks: list[Chunk] = []
    for number, page in enumerate(text.split("\f"), start=1):
        units = _units(page, count_tokens, chunk_tokens)
        for body in _pack(units, count_tokens, chunk_tokens, chunk_overlap):
            chunks.append(Chunk(body, f"Page {number}", len(chunks), count_tokens(body)))
    return chunks


def chunk_faq(text: str, *, count_tokens: TokenCounter, chunk_tokens: int = 200) -> list[Chunk]:
    """One chunk per question-answer pair (`## question` sections); the section is the question.

    An answer too long for the model is split, each piece keeping its question.
    """
    chunks: list[Chunk] = []
    for section in markdown_sections(text):
        question = section.path
        whole = f"{question}\n{section.text}"
        pieces = (
            [whole]
            if count_tokens(whole) <= chunk_tokens
            else [
                f"{question}\n{piece}"
                for piece in hard_split(
                    section.text, count_tokens, max(16, chunk_tokens - count_tokens(question) - 2)
                )
            ]
        )
        for piece in pieces:
            chunks.append(Chunk(piece, question, len(chunks), count_tokens(piece)))
    return chunks


def chunk_document(
    kind: str, text: str, *, count_tokens: TokenCounter, chunk_tokens: int, chunk_overlap: int
) -> list[Chunk]:
    """Chunk a loaded document by its kind (markdown, text, pdf or faq)."""
    if kind == "faq":
        return chunk_faq(text, count_tokens=count_tokens, chunk_tokens=chunk_tokens)
    split = {"markdown": chunk_markdown, "pdf": chunk_pdf}.get(kind, chunk_text)
    return split(
        text, count_tokens=count_tokens, chunk_tokens=chunk_tokens, chunk_overlap=chunk_overlap
    )
