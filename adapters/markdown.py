"""The model's Markdown as each surface can show it, from one markdown-it-py syntax tree.

Slack gets mrkdwn, Feishu cards and DingTalk get a conservative Markdown subset, the web chat
and the console get sanitised HTML. Raw HTML in the source is never passed through (the parser
runs with `html` off), links keep only http(s) and mailto targets, and a partial answer (a
streamed edit) holds back markup that is not closed yet, so nobody sees a dangling `**Annual`.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import nh3
from markdown_it import MarkdownIt
from markdown_it.tree import SyntaxTreeNode

__all__ = ["Dialect", "hold_back", "to_dingtalk", "to_feishu", "to_html", "to_mrkdwn"]

Dialect = Literal["slack", "feishu", "dingtalk"]

_SAFE_SCHEMES = ("http://", "https://", "mailto:")
_ZWSP = "\u200b"  # lets Slack see `*bold*` next to CJK text, where it wants a word boundary
_HTML_TAGS = {
    "p", "br", "strong", "em", "s", "del", "code", "pre", "blockquote", "ul", "ol", "li",
    "a", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "table", "thead", "tbody", "tr", "th", "td",
}  # fmt: skip


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "breaks": True}).enable(
        ["table", "strikethrough"]
    )


def safe_url(url: str) -> str | None:
    """The URL when its scheme is one a chat may open (http, https, mailto), else None."""
    cleaned = url.strip()
    return cleaned if cleaned.lower().startswith(_SAFE_SCHEMES) else None


# -- partial answers ---------------------------------------------------------------------------

_OPEN_LINK = re.compile(r"!?\[([^\]\n]*)\]\([^)\n]*$")
_OPEN_LABEL = re.compile(r"!?\[([^\]\n]*)$")
_DELIMITERS = re.compile(r"(\*{1,3}|_{2,3}|~~|`+)")


def hold_back(text: str) -> str:
    """A streamed prefix of an answer without constructs that are not finished yet: an
    unclosed `**`, `~~` or backtick, a link whose target is still coming, a table row being
    written. Code fences are closed by the renderers themselves."""
    lines = text.split("\n")
    last = lines[-1]
    if last.lstrip().startswith("|"):
        lines.pop()  # a table row still being written (or a header waiting for its rule)
        while lines and lines[-1].lstrip().startswith("|") and not _has_rule(lines):
            lines.pop()
    text = "\n".join(lines)
    text = _OPEN_LINK.sub(lambda m: m.group(1), text)
    return _OPEN_LABEL.sub(lambda m: m.group(1), text)


def _has_rule(lines: list[str]) -> bool:
    return any(re.fullmatch(r"\s*\|?\s*:?-{3,}.*", line) for line in lines)


def _strip_dangling(text: str) -> str:
    """Delimiters the parser left as text in a partial answer: their pair has not arrived."""
    return _DELIMITERS.sub("", text)


# -- one renderer, three dialects --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Style:
    strong: tuple[str, str]
    em: tuple[str, str]
    strike: tuple[str, str]
    escape: Callable[[str], str]
    link: Callable[[str, str], str]
    heading: Callable[[int, str], str]
    table: Literal["code", "rows"]
    code_blocks: bool  # False: a code block becomes quoted lines (DingTalk shows no fences)
    bullet: str = "- "
    escape_code: bool = False  # Slack reads `&lt;` inside code too; Markdown dialects do not


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _md_escape(text: str) -> str:
    # DingTalk reads `<font …>` tags in Markdown: show angle brackets as text; text that only
    # looked like a link (a `javascript:` one the parser refused) must not become one
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("](", "] (")


def _feishu_escape(text: str) -> str:
    # Feishu cards read `<at …>` / `<font …>` tags; its documented escapes are numeric entities
    return text.replace("<", "&#60;").replace(">", "&#62;").replace("](", "] (")


def _slack_link(url: str, label: str) -> str:
    target = _slack_escape(url).replace("|", "%7C")
    return f"<{target}|{label}>" if label and label != url else f"<{target}>"


def _md_link(url: str, label: str) -> str:
    target = url.replace(" ", "%20").replace("(", "%28").replace(")", "%29")
    shown = label.replace("[", "(").replace("]", ")") or url
    return f"[{shown}]({target})"


_STYLES: dict[str, _Style] = {
    "slack": _Style(
        strong=(f"{_ZWSP}*", f"*{_ZWSP}"),
        em=(f"{_ZWSP}_", f"_{_ZWSP}"),
        strike=(f"{_ZWSP}~", f"~{_ZWSP}"),
        escape=_slack_escape,
        link=_slack_link,
        heading=lambda level, text: f"{_ZWSP}*{text}*{_ZWSP}",
        table="code",
        code_blocks=True,
        bullet="• ",
        escape_code=True,
    ),
    "feishu": _Style(
        strong=("**", "**"),
        em=("*", "*"),
        strike=("~~", "~~"),
        escape=_feishu_escape,
        link=_md_link,
        heading=lambda level, text: f"**{text}**",  # card headings are huge: bold reads better
        table="rows",
        code_blocks=True,
    ),
    "dingtalk": _Style(
        strong=("**", "**"),
        em=("*", "*"),
        strike=("", ""),  # DingTalk shows `~~` literally
        escape=_md_escape,
        link=_md_link,
        heading=lambda level, text: f"{'#' * min(level + 2, 6)} {text}",
        table="rows",
        code_blocks=False,
    ),
}


class _Renderer:
    def __init__(self, style: _Style, *, partial: bool) -> None:
        self._s = style
        self._partial = partial

    def blocks(self, nodes: Iterable[SyntaxTreeNode], indent: str = "") -> str:
        out = [self.block(node, indent) for node in nodes]
        return "\n\n".join(part for part in out if part.strip())

    def block(self, node: SyntaxTreeNode, indent: str = "") -> str:
        kind = node.type
        if kind == "paragraph":
            return self.inline(node.children)
        if kind == "heading":
            return self._s.heading(int(node.tag[1]), self.inline(node.children))
        if kind in ("bullet_list", "ordered_list"):
            return self.listing(node, indent)
        if kind == "blockquote":
            body = self.blocks(node.children)
            return "\n".join(f"> {line}" if line else ">" for line in body.split("\n"))
        if kind in ("fence", "code_block"):
            return self.code(node.content.rstrip("\n"))
        if kind == "hr":
            return "───"
        if kind == "table":
            return self.table(node)
        if kind == "html_block":
            return self._s.escape(node.content.strip())
        return self.blocks(node.children, indent)

    def listing(self, node: SyntaxTreeNode, indent: str) -> str:
        lines = []
        start = int(str(node.attrs.get("start", 1)))
        for number, item in enumerate(node.children, start=start):
            marker = f"{number}. " if node.type == "ordered_list" else self._s.bullet
            pad = indent + " " * len(marker)
            parts = []
            for child in item.children:
                if child.type in ("bullet_list", "ordered_list"):
                    parts.append(self.listing(child, indent + "    "))
                else:
                    parts.append(self.block(child, pad))
            body = "\n".join(p for p in parts if p)
            first, *rest = body.split("\n") if body else [""]
            lines.append(indent + marker + first)
            lines.extend(r if r.startswith(indent + " ") else pad + r for r in rest)
        return "\n".join(lines)

    def code(self, content: str) -> str:
        if self._s.code_blocks:
            body = self._s.escape(content) if self._s.escape_code else content
            return f"```\n{body}\n```"
        return "\n".join(f"> {self._s.escape(line)}" for line in content.split("\n"))

    def table(self, node: SyntaxTreeNode) -> str:
        rows: list[list[str]] = []
        for section in node.children:
            for row in section.children:
                rows.append([self.inline(cell.children, plain=True) for cell in row.children])
        if not rows:
            return ""
        if self._s.table == "code":
            widths = [
                max(_width(r[i]) for r in rows if i < len(r)) for i in range(max(map(len, rows)))
            ]
            lines = [
                "  ".join(_pad(cell, widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows
            ]
            lines.insert(1, "  ".join("-" * w for w in widths))
            return "```\n" + "\n".join(self._s.escape(line) for line in lines) + "\n```"
        header, *body = rows
        out = []
        for r in body:
            pairs = [
                f"{self._s.strong[0]}{header[i]}{self._s.strong[1]}: {cell}" if i < len(header) and header[i] else cell
                for i, cell in enumerate(r)
            ]  # fmt: skip
            out.append("- " + " · ".join(pairs))
        return "\n".join(out) if out else " · ".join(header)

    def inline(self, nodes: Iterable[SyntaxTreeNode], *, plain: bool = False) -> str:
        return "".join(self.span(node, plain) for node in nodes)

    def span(self, node: SyntaxTreeNode, plain: bool) -> str:
        kind = node.type
        if kind == "inline":
            return self.inline(node.children, plain=plain)
        if kind == "text":
            text = _strip_dangling(node.content) if self._partial else node.content
            return text if plain else self._s.escape(text)
        if kind in ("softbreak", "hardbreak"):
            return " " if plain else "\n"
        if kind == "code_inline":
            content = node.content if plain else self._s.escape(node.content)
            return content if plain else f"`{content}`"
        if kind in ("strong", "em", "s"):
            inner = self.inline(node.children, plain=plain)
            if plain or not inner.strip():
                return inner
            wrap = {"strong": self._s.strong, "em": self._s.em, "s": self._s.strike}[kind]
            return f"{wrap[0]}{inner}{wrap[1]}"
        if kind in ("link", "image"):
            label = (
                self.inline(node.children, plain=True)
                if kind == "link"
                else str(node.attrs.get("alt") or node.content or "")
            )
            url = safe_url(str(node.attrs.get("href") or node.attrs.get("src") or ""))
            if plain or url is None:
                return self._s.escape(label) if not plain else label
            return self._s.link(url, self._s.escape(label))
        if kind == "html_inline":
            return node.content if plain else self._s.escape(node.content)
        return self.inline(node.children, plain=plain)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def _render(text: str, dialect: Dialect, partial: bool) -> str:
    source = hold_back(text) if partial else text
    tree = SyntaxTreeNode(_parser().parse(source))
    out = _Renderer(_STYLES[dialect], partial=partial).blocks(tree.children).strip()
    return _NEEDLESS_ZWSP.sub("", out) if dialect == "slack" else out


# Slack needs the zero-width space only between a mark and a letter (CJK text has no spaces);
# next to another mark, a space, punctuation or the line's end it is noise in copied text.
_NEEDLESS_ZWSP = re.compile(
    rf"(?<=[*_~]){_ZWSP}+(?=[*_~])|(?<={_ZWSP}){_ZWSP}+"
    rf"|(?:^|(?<=[\s(\[{{<>\-\u2022])){_ZWSP}|{_ZWSP}(?=[\s.,;:!?)\]}}]|$)",
    re.MULTILINE,
)


def to_mrkdwn(text: str, *, partial: bool = False) -> str:
    """Slack mrkdwn: `*bold*`, `_italic_`, `<url|label>`, quotes, code, tables as code blocks."""
    return _render(text, "slack", partial)


def to_feishu(text: str, *, partial: bool = False) -> str:
    """Feishu card Markdown (JSON 2.0 `markdown` element): tables as bullet rows."""
    return _render(text, "feishu", partial)


def to_dingtalk(text: str, *, partial: bool = False) -> str:
    """DingTalk Markdown: no tables, fences or strike-through, which it cannot show."""
    return _render(text, "dingtalk", partial)


def to_html(text: str, *, partial: bool = False) -> str:
    """Sanitised HTML for the web chat and the console: no raw HTML from the source, links only
    to http(s)/mailto, opened in a new tab without the opener."""
    parser = _parser()
    tokens = parser.parse(hold_back(text) if partial else text)
    if partial:
        for token in tokens:
            for child in token.children or ():
                if child.type == "text":
                    child.content = _strip_dangling(child.content)
    html = parser.renderer.render(tokens, parser.options, {})
    return nh3.clean(
        html,
        tags=_HTML_TAGS,
        attributes={"a": {"href", "title"}, "ol": {"start"}, "th": {"style"}, "td": {"style"}},
        url_schemes={"http", "https", "mailto"},
        link_rel="noopener noreferrer nofollow",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        filter_style_properties={"text-align"},
    )
