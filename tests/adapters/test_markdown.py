"""The rendering table: the same Markdown samples through every surface's renderer.

Rows are the samples that broke the old hand-written converter (a link with parentheses in its
URL, `***x***`, block quotes, pipe tables, a streamed `**Annual`) and hostile input (a
`<script>` tag, a `javascript:` link). Columns are Slack mrkdwn, Feishu card Markdown, DingTalk
Markdown and the web chat's HTML; each cell is what that surface must (and must not) contain.
"""

from __future__ import annotations

import pytest

from adapters.markdown import hold_back, to_dingtalk, to_feishu, to_html, to_mrkdwn

LINK = "See [the policy (2026)](https://wiki.example.com/Leave_(policy)) now."
NESTED = "This is ***very important***."
QUOTE = "> Ask your manager first.\n> Then HR."
TABLE = "| Kind | Days |\n| --- | ---: |\n| Annual 年假 | 10 |\n| Sick | 5 |"
CODE = "```bash\nvpn --reset && echo <ok>\n```"
LIST = "1. first\n2. second\n   - nested *detail*"
SCRIPT = "Hello <script>alert('x')</script> <img src=x onerror=alert(1)>"
JS_LINK = "[click me](javascript:alert(1)) and [ok](https://example.com)"
CJK_BOLD = "年假需在**30 天内**申请"

RENDERERS = {"slack": to_mrkdwn, "feishu": to_feishu, "dingtalk": to_dingtalk, "web": to_html}

# sample -> surface -> (must contain, must not contain)
TABLE_OF_CASES: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    LINK: {
        "slack": (["<https://wiki.example.com/Leave_(policy)|the policy (2026)>"], ["]("]),
        "feishu": (["[the policy (2026)](https://wiki.example.com/Leave_%28policy%29)"], []),
        "dingtalk": (["[the policy (2026)](https://wiki.example.com/Leave_%28policy%29)"], []),
        "web": (['href="https://wiki.example.com/Leave_(policy)"', ">the policy (2026)</a>"], []),
    },
    NESTED: {
        "slack": (["_*very important*_"], ["***"]),
        "feishu": (["***very important***"], []),
        "dingtalk": (["***very important***"], []),
        "web": (["<em><strong>very important</strong></em>"], ["***"]),
    },
    QUOTE: {
        "slack": (["> Ask your manager first.\n> Then HR."], ["&gt;"]),
        "feishu": (["> Ask your manager first."], []),
        "dingtalk": (["> Ask your manager first."], []),
        "web": (["<blockquote>"], []),
    },
    TABLE: {
        "slack": (["```\nKind         Days\n", "Annual 年假  10"], ["| Kind |"]),
        "feishu": (["- **Kind**: Annual 年假 · **Days**: 10"], ["| Kind |"]),
        "dingtalk": (["- **Kind**: Sick · **Days**: 5"], ["| Kind |"]),
        "web": (["<table>", '<td style="text-align:right">10</td>'], []),
    },
    CODE: {
        "slack": (["```\nvpn --reset &amp;&amp; echo &lt;ok&gt;\n```"], ["bash"]),
        "feishu": (["```\nvpn --reset && echo <ok>\n```"], []),
        "dingtalk": (["> vpn --reset && echo &lt;ok&gt;"], ["```"]),
        "web": (["<pre><code>vpn --reset &amp;&amp; echo &lt;ok&gt;"], []),
    },
    LIST: {
        "slack": (["1. first\n2. second\n    • nested _detail_"], []),
        "feishu": (["1. first\n2. second\n    - nested *detail*"], []),
        "dingtalk": (["2. second\n    - nested *detail*"], []),
        "web": (["<ol>", "<ul>", "<em>detail</em>"], []),
    },
    SCRIPT: {
        "slack": (["&lt;script&gt;"], ["<script", "<img"]),
        "feishu": (["&#60;script&#62;"], ["<script", "<img"]),
        "dingtalk": (["&lt;script&gt;"], ["<script", "<img"]),
        "web": (["&lt;script&gt;"], ["<script", "<img"]),
    },
    JS_LINK: {
        "slack": (["<https://example.com|ok>"], ["<javascript:"]),
        "feishu": (["[ok](https://example.com)"], ["](javascript:"]),
        "dingtalk": (["[ok](https://example.com)"], ["](javascript:"]),
        "web": (['href="https://example.com"'], ['href="javascript:']),
    },
    CJK_BOLD: {
        "slack": (["年假需在\u200b*30 天内*\u200b申请"], ["**"]),
        "feishu": (["**30 天内**"], []),
        "dingtalk": (["**30 天内**"], []),
        "web": (["<strong>30 天内</strong>"], ["**"]),
    },
}


@pytest.mark.parametrize(
    ("sample", "surface"),
    [(sample, surface) for sample in TABLE_OF_CASES for surface in RENDERERS],
)
def test_rendering_table(sample: str, surface: str) -> None:
    shown = RENDERERS[surface](sample)
    must, must_not = TABLE_OF_CASES[sample][surface]
    for part in must:
        assert part in shown, f"{surface} lacks {part!r} in {shown!r}"
    for part in must_not:
        assert part not in shown, f"{surface} shows {part!r} in {shown!r}"


STREAMED = [
    ("The **Annual", "Annual", "**"),  # the first streamed edit of the issue
    ("Use `vpn --res", "vpn --res", "`"),
    ("Read [the guide](https://wiki.example.com/vp", "the guide", "]("),
    ("Read [the gui", "the gui", "["),
    ("~~old", "old", "~~"),
    ("Days:\n\n| Kind | Days |\n| --- | --- |\n| Annual | 1", "Days:", "| Annual"),
]


@pytest.mark.parametrize(("partial", "kept", "held"), STREAMED)
@pytest.mark.parametrize("surface", list(RENDERERS))
def test_a_streamed_prefix_never_shows_dangling_markup(
    partial: str, kept: str, held: str, surface: str
) -> None:
    shown = RENDERERS[surface](partial, partial=True)  # type: ignore[operator]
    assert kept in shown
    assert held not in shown.replace("<p>", "").replace("</p>", "")


def test_an_unclosed_code_fence_is_closed_while_streaming() -> None:
    shown = to_mrkdwn("Run:\n```\nvpn --reset", partial=True)
    assert shown.endswith("```") and shown.count("```") == 2


def test_hold_back_keeps_finished_text_untouched() -> None:
    done = "Finished **bold** and [a link](https://example.com)."
    assert hold_back(done) == done
    assert to_mrkdwn(done, partial=True) == to_mrkdwn(done)
