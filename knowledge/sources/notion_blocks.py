"""Notion blocks and page properties to Markdown (pure functions on the API's JSON).

The page title is the `#` heading; Notion's heading_1–3 become `##`–`####`, so a passage's
section reads "Page > Heading". Lists, to-dos, toggles, quotes, callouts, code, tables and
equations keep their text; sub-pages and child databases are documents of their own and are
only named here.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Block", "blocks_markdown", "page_title", "properties_markdown", "rich_text"]

Block = dict[str, Any]  # a block object, with "children" filled in by the reader

_PREFIX = {
    "bulleted_list_item": "- ",
    "numbered_list_item": "1. ",
    "toggle": "- ",
    "quote": "> ",
    "callout": "> ",
}


def rich_text(items: list[dict[str, Any]] | None) -> str:
    """The plain text of a rich-text array (inline code keeps its backticks)."""
    parts = []
    for item in items or []:
        text = item.get("plain_text") or item.get("text", {}).get("content", "")
        if item.get("annotations", {}).get("code") and text:
            text = f"`{text}`"
        parts.append(text)
    return "".join(parts)


def page_title(page: dict[str, Any]) -> str:
    """A page's title: its `title` property (whatever the property is named)."""
    for prop in page.get("properties", {}).values():
        if prop.get("type") == "title":
            return rich_text(prop.get("title")).strip()
    return ""


def properties_markdown(page: dict[str, Any]) -> str:
    """A database row's other properties as `- Name: value` lines (empty ones left out)."""
    lines = []
    for name, prop in page.get("properties", {}).items():
        kind = prop.get("type", "")
        value = prop.get(kind)
        if kind == "title" or value in (None, [], ""):
            continue
        if kind == "rich_text":
            text = rich_text(value)
        elif kind in ("select", "status"):
            text = value.get("name", "")
        elif kind == "multi_select":
            text = ", ".join(v.get("name", "") for v in value)
        elif kind == "date":
            text = " → ".join(v for v in (value.get("start"), value.get("end")) if v)
        elif kind in ("number", "url", "email", "phone_number", "checkbox"):
            text = str(value)
        elif kind == "people":
            text = ", ".join(p.get("name", "") for p in value if p.get("name"))
        else:
            continue
        if text.strip():
            lines.append(f"- {name}: {text.strip()}")
    return "\n".join(lines)


def blocks_markdown(blocks: list[Block], depth: int = 0) -> list[str]:
    """Markdown lines of blocks (their filled-in children indented under list items)."""
    lines: list[str] = []
    indent = "  " * depth
    for block in blocks:
        kind = block.get("type", "")
        body = block.get(kind, {}) or {}
        text = rich_text(body.get("rich_text"))
        children = block.get("children", [])
        if kind.startswith("heading_") and kind[-1].isdigit():
            lines += ["", f"{'#' * (int(kind[-1]) + 1)} {text}", ""]
        elif kind == "paragraph":
            lines += [indent + text, ""] if text else []
        elif kind in _PREFIX:
            lines.append(indent + _PREFIX[kind] + text)
        elif kind == "to_do":
            lines.append(indent + ("- [x] " if body.get("checked") else "- [ ] ") + text)
        elif kind == "code":
            lines += ["```" + body.get("language", ""), text, "```", ""]
        elif kind == "equation":
            lines += [f"$${body.get('expression', '')}$$", ""]
        elif kind == "divider":
            lines += ["---", ""]
        elif kind == "table":
            lines += _table(children)
            continue
        elif kind in ("child_page", "child_database"):
            lines += [f"{indent}({body.get('title', '')})", ""]
            continue
        elif kind in ("image", "file", "pdf", "video", "bookmark", "embed", "link_preview"):
            caption = rich_text(body.get("caption"))
            if caption or body.get("url"):
                lines += [indent + (caption or body.get("url", "")), ""]
        if children:
            nested = depth + 1 if kind in _PREFIX or kind == "to_do" else depth
            lines += blocks_markdown(children, nested)
    return lines


def _table(rows: list[Block]) -> list[str]:
    lines = []
    for n, row in enumerate(rows):
        cells = row.get("table_row", {}).get("cells", [])
        lines.append("| " + " | ".join(rich_text(c).replace("|", "\\|") for c in cells) + " |")
        if n == 0:
            lines.append("|" + " --- |" * len(cells))
    return [*lines, ""]
