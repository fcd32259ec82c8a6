"""How the console shows values: internal words in 中文 and English, times in the configured
zone, Markdown rendered without letting HTML through."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.console.present import Clock, markdown, words


def test_internal_values_are_words_in_both_languages() -> None:
    assert (
        str(words("retrieval_only"))
        == '仅检索结果（无模型） <span class="en">passages only, no model text</span>'
    )
    assert "提问人要求转人工" in words("asked_for_human")
    assert "等待人工" in words("escalated") and "已批准" in words("approved")
    assert str(words("console:Mei")).startswith("Mei")
    assert str(words("<b>odd</b>")) == "&lt;b&gt;odd&lt;/b&gt;"  # unknown values, escaped


def test_times_are_local_with_a_machine_readable_moment() -> None:
    shown = str(Clock("Asia/Shanghai").when(datetime(2026, 12, 2, 5, 30, tzinfo=UTC)))
    assert ">12-02 13:30</time>" in shown and 'datetime="2026-12-02T05:30:00+00:00"' in shown


def test_transcripts_render_markdown_but_no_html() -> None:
    html = str(markdown("**5 days** <img src=x onerror=alert(1)> [x](javascript:alert(1))"))
    assert "<strong>5 days</strong>" in html
    assert "<img" not in html and 'href="javascript' not in html
