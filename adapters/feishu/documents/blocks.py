"""Feishu docx blocks (docx/v1 `documents/:id/blocks`) to Markdown, so that headings become the
chunk's section path. Pure: a list of block dicts in, text out.

Block types (Open API): 1 page, 2 text, 3–11 heading1–9, 12 bullet, 13 ordered, 14 code,
15 quote, 17 todo, 19 callout, 22 divider, 27 image, 31 table, 32 table cell,
34 quote container. Others with children (grids, columns, synced blocks) are walked through;
others without text are left out.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

__all__ = ["to_markdown"]

Block = dict[str, Any]

_HEADINGS = {t: t - 2 for t in range(3, 12)}  # block_type -> heading level 1..9
_FIELDS = {
    1: "page",
    2: "text",
    12: "bullet",
    13: "ordered",
    14: "code",
    15: "quote",
    17: "todo",
    **{t: f"heading{t - 2}" for t in range(3, 12)},
}
_CODE_LANGUAGES = {
    1: "",
    7: "bash",
    22: "go",
    29: "java",
    30: "javascript",
    49: "python",
    53: "ruby",
    56: "shell",
    57: "sql",
    63: "typescript",
    66: "yaml",
    28: "json",
}


def to_markdown(blocks: list[Block]) -> str:
    """The document's body as Markdown (the page title is not repeated: it is the title)."""
    by_id = {b.get("block_id", ""): b for b in blocks if b.get("block_id")}
    roots = [b for b in blocks if b.get("block_type") == 1] or [
        b for b in blocks if b.get("parent_id") not in by_id
    ]
    lines: list[str] = []
    for root in roots:
        if root.get("block_type") == 1:
            for child in _children(root, by_id):
                _render(child, by_id, lines, "")
        else:
            _render(root, by_id, lines, "")
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text.strip() + "\n"


def _children(block: Block, by_id: dict[str, Block]) -> list[Block]:
    return [by_id[c] for c in block.get("children") or () if c in by_id]


def _render(block: Block, by_id: dict[str, Block], out: list[str], indent: str) -> None:
    kind = block.get("block_type")
    text = inline(block.get(_FIELDS.get(kind or 0, ""), {}) or {})
    if kind in _HEADINGS:
        out.extend(["", "#" * min(_HEADINGS[kind], 6) + " " + text, ""])
    elif kind == 2:
        out.extend([indent + text, ""] if text else [])
    elif kind in (12, 13, 17):
        mark = {12: "- ", 13: "1. "}.get(kind or 0, "")
        if kind == 17:
            done = ((block.get("todo") or {}).get("style") or {}).get("done")
            mark = "- [x] " if done else "- [ ] "
        out.append(indent + mark + text)
        for child in _children(block, by_id):
            _render(child, by_id, out, indent + "  ")
        if not indent:
            out.append("")
        return
    elif kind == 14:
        style = (block.get("code") or {}).get("style") or {}
        language = _CODE_LANGUAGES.get(style.get("language") or 1, "")
        out.extend(["```" + language, text, "```", ""])
    elif kind == 15:
        out.extend(["> " + text, ""])
    elif kind == 22:
        out.extend(["---", ""])
    elif kind == 31:
        out.extend([*_table(block, by_id), ""])
        return
    elif kind == 34:
        inner: list[str] = []
        for child in _children(block, by_id):
            _render(child, by_id, inner, "")
        out.extend([("> " + line).rstrip() for line in inner if line] + [""])
        return
    for child in _children(block, by_id):
        _render(child, by_id, out, indent)


def _table(block: Block, by_id: dict[str, Block]) -> list[str]:
    prop = (block.get("table") or {}).get("property") or {}
    columns = int(prop.get("column_size") or 0)
    cells = [_cell(c, by_id) for c in _children(block, by_id)]
    if not columns or not cells:
        return cells
    rows = [cells[i : i + columns] for i in range(0, len(cells), columns)]
    lines = ["| " + " | ".join(rows[0]) + " |", "|" + " --- |" * columns]
    lines.extend("| " + " | ".join(row) + " |" for row in rows[1:])
    return lines


def _cell(cell: Block, by_id: dict[str, Block]) -> str:
    parts: list[str] = []
    for child in _children(cell, by_id):
        inner: list[str] = []
        _render(child, by_id, inner, "")
        parts.extend(line.strip() for line in inner if line.strip())
    return " ".join(parts).replace("|", "\\|")


def inline(field: dict[str, Any]) -> str:
    """The text of a block's `elements`: text runs (links kept), doc mentions, equations."""
    pieces: list[str] = []
    for element in field.get("elements") or ():
        run = element.get("text_run")
        if run:
            content = str(run.get("content") or "")
            link = ((run.get("text_element_style") or {}).get("link") or {}).get("url")
            pieces.append(f"[{content}]({unquote(link)})" if link and content else content)
        elif element.get("mention_doc"):
            doc = element["mention_doc"]
            title, url = doc.get("title") or "", unquote(doc.get("url") or "")
            pieces.append(f"[{title}]({url})" if url else title)
        elif element.get("equation"):
            pieces.append(f"${str(element['equation'].get('content') or '').strip()}$")
    return "".join(pieces).strip()
