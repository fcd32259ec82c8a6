"""Other markups to Markdown with their headings, so the chunker keeps section paths:
reStructuredText (a Git repository's docs) and Confluence's storage format (XHTML with `ac:`
macros). Pure functions on text; small and forgiving — a construct they do not know keeps its
text."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

__all__ = ["rst_to_markdown", "storage_to_markdown"]

_ADORNMENT = re.compile(r"^([=\-`:'\"~^_*+#<>])\1{2,}\s*$")


def rst_to_markdown(text: str) -> str:
    """Section titles (underlined, optionally overlined) become `#` headings, levels in the
    order the document first uses each adornment, as reStructuredText defines them."""
    lines = text.splitlines()
    styles: list[tuple[str, bool]] = []
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        over = bool(_ADORNMENT.match(line)) and i + 2 < len(lines)
        if over and lines[i + 1].strip() and _ADORNMENT.match(lines[i + 2]):
            title, style, i = lines[i + 1].strip(), (line.strip()[0], True), i + 3
        elif (
            line.strip()
            and not _ADORNMENT.match(line)
            and i + 1 < len(lines)
            and _ADORNMENT.match(lines[i + 1])
            and len(lines[i + 1].rstrip()) >= len(line.rstrip())
        ):
            title, style, i = line.strip(), (lines[i + 1].strip()[0], False), i + 2
        else:
            out.append(line)
            i += 1
            continue
        if style not in styles:
            styles.append(style)
        out.append(f"{'#' * min(styles.index(style) + 1, 6)} {title}")
    return "\n".join(out) + "\n"


_BLOCKS = {"p", "div", "table", "blockquote", "ac:rich-text-body", "ac:layout-cell"}


class _Storage(HTMLParser):
    """Confluence storage XHTML -> Markdown lines."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._line: list[str] = []
        self._lists: list[str] = []  # "ul" | "ol"
        self._pre = 0
        self._code_macro = False
        self._skip = 0
        self._row: list[str] | None = None
        self._rows = 0
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag in ("ac:parameter", "ri:attachment", "style", "script"):
            self._skip += 1
        elif tag == "ac:structured-macro" and named.get("ac:name") in ("code", "noformat"):
            self._flush()
            self._code_macro = True
        elif re.fullmatch(r"h[1-6]", tag):
            self._flush()
            self._line.append("#" * int(tag[1]) + " ")
        elif tag in ("ul", "ol"):
            self._flush()
            self._lists.append(tag)
        elif tag == "li":
            self._flush()
            depth = max(len(self._lists) - 1, 0)
            marker = "1." if self._lists and self._lists[-1] == "ol" else "-"
            self._line.append("  " * depth + marker + " ")
        elif tag == "pre":
            self._flush()
            self._pre += 1
        elif tag == "tr":
            self._flush()
            self._row = []
        elif tag in ("td", "th"):
            self._cell = []
        elif tag == "br":
            self._flush()
        elif tag in ("strong", "b"):
            self._text("**")
        elif tag in ("em", "i"):
            self._text("_")
        elif tag in _BLOCKS:
            self._flush()

    def handle_endtag(self, tag: str) -> None:
        if tag in ("ac:parameter", "ri:attachment", "style", "script"):
            self._skip = max(self._skip - 1, 0)
        elif tag == "ac:structured-macro" and self._code_macro:
            self._code_macro = False
        elif tag in ("ul", "ol"):
            self._flush()
            if self._lists:
                self._lists.pop()
            if not self._lists:
                self.out.append("")
        elif tag == "pre":
            self._pre = max(self._pre - 1, 0)
        elif tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append(" ".join("".join(self._cell).split()).replace("|", "\\|"))
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self.out.append("| " + " | ".join(self._row) + " |")
            if self._rows == 0:
                self.out.append("|" + " --- |" * len(self._row))
            self._rows += 1
            self._row = None
        elif tag == "table":
            self._rows = 0
            self.out.append("")
        elif tag in ("strong", "b"):
            self._text("**")
        elif tag in ("em", "i"):
            self._text("_")
        elif re.fullmatch(r"h[1-6]", tag) or tag in _BLOCKS or tag == "li":
            self._flush(blank=tag != "li")

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.out.append("```\n" + data.strip("\n") + "\n```")
            return
        self._text(data if self._cell is not None else " ".join(data.split(" ")))

    def unknown_decl(self, data: str) -> None:
        if data.startswith("CDATA[") and not self._skip:
            body = data[len("CDATA[") :]
            if self._code_macro or self._pre:
                self._flush()
                self.out += ["```", body.strip("\n"), "```", ""]
            else:
                self._text(body)

    def _text(self, text: str) -> None:
        if self._cell is not None:
            self._cell.append(text)
        else:
            self._line.append(text.replace("\n", " "))

    def _flush(self, blank: bool = False) -> None:
        line = "".join(self._line).rstrip()
        self._line = []
        if line.strip(" #-1."):
            self.out.append(line)
        if blank and self.out and self.out[-1] != "":
            self.out.append("")


def storage_to_markdown(storage: str, title: str = "") -> str:
    """A Confluence page body in storage format as Markdown, under `# title`."""
    parser = _Storage()
    parser.feed(storage)
    parser.close()
    parser._flush()
    text = "\n".join(parser.out)
    text = re.sub(r"\n{3,}", "\n\n", text).strip()
    head = f"# {html.unescape(title)}\n\n" if title else ""
    return head + text + "\n"
