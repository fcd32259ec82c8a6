"""How the console shows values: internal words translated (中文 + English), times in the
configured zone with relative times, Markdown rendered safely, durations and percentages, and
no bidi control characters in anything a page shows."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from adapters.markdown import to_html
from engine.threads.escalation import TRIGGER_LABELS

# The controls that reorder text (LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI), and the marks
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069\u200e\u200f\u061c]")

# internal value -> (中文, English); anything not listed is shown as it is
WORDS: dict[str, tuple[str, str]] = {
    # thread states
    "open": ("机器人回答中", "bot answering"),
    "escalated": ("等待人工", "waiting for a person"),
    "human": ("人工处理中", "with a person"),
    "resolved": ("已解决", "resolved"),
    # answer outcomes
    "answered": ("已回答", "answered"),
    "no_knowledge": ("知识库无相关内容", "nothing in the knowledge base"),
    "retrieval_only": ("仅检索结果（无模型）", "passages only, no model text"),
    "truncated": ("回答被截断", "answer cut at the length limit"),
    "interrupted": ("模型服务中途出错", "model server failed mid-answer"),
    "timed_out": ("回答超时", "answer took too long"),
    "too_long": ("问题过长", "question too long for the model"),
    "failed": ("未能回答", "could not answer"),
    "handed_off": ("已转人工", "handed to a person"),
    "command": ("指令", "command"),
    # FAQ candidates
    "pending": ("待审核", "waiting for review"),
    "approved": ("已批准", "approved"),
    "rejected": ("已拒绝", "rejected"),
    # knowledge source results
    "ok": ("正常", "ok"),
    "partial": ("部分失败", "some documents failed"),
    "running": ("刷新中", "refreshing"),
    "never": ("从未运行", "never run"),
    "managed": ("托管", "managed"),
    "orphan": ("孤儿（配置中已删除）", "orphan: no longer configured"),
    # knowledge source kinds
    "directory": ("文件夹", "folder"),
    "url": ("网页", "web pages"),
    "sitemap": ("网站地图", "sitemap"),
    # who resolved
    "asker": ("提问人", "the asker"),
    "idle": ("闲置自动关闭", "closed when idle"),
    "superseded": ("被新的升级取代", "superseded"),
    # roles
    "admin": ("管理员", "admin"),
    "agent": ("客服", "agent"),
}
for _trigger, _labels in TRIGGER_LABELS.items():
    WORDS[_trigger] = (_labels["zh"], _labels["en"])


def words(value: object, names: Mapping[str, tuple[str, str]] | None = None) -> Markup:
    """An internal value as `中文 <span>English</span>`; `console:Mei` as the agent's name.
    `names` adds (中文, English) pairs of its own: the platforms' labels, from their records."""
    text = str(getattr(value, "value", value) or "")
    if text.startswith("console:"):
        return Markup("{} <span class=en>(console)</span>").format(text.removeprefix("console:"))
    found = (names or {}).get(text) or WORDS.get(text)
    if found is None:
        return Markup("{}").format(text or "—")
    zh, en = found
    if zh == en:
        return Markup("{}").format(zh)
    return Markup('{} <span class="en">{}</span>').format(zh, en)


class Clock:
    """Times in the console's zone, with a relative time the page keeps current."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.zone_name = zone

    def when(self, moment: datetime | None) -> Markup:
        if moment is None:
            return Markup("—")
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        local = aware.astimezone(self.zone).strftime("%m-%d %H:%M")
        return Markup('<time datetime="{}" data-ago>{}</time>').format(
            aware.astimezone(UTC).isoformat(), local
        )


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def percent(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def markdown(text: str | None) -> Markup:
    """Answers and agents' replies as sanitised HTML (adapters/markdown.py)."""
    return Markup(to_html(text or ""))  # sanitised by nh3 in to_html


def unbidi(value: object) -> object:
    """Every value a page shows, without bidi embedding/override/isolate controls: a question
    (or a name, a file name) cannot show agents its words in another order than it holds them.
    Stored text from before `engine/clean.py` took them out at intake is covered too."""
    if isinstance(value, Markup):
        return Markup(_BIDI.sub("", str(value))) if not value.isascii() else value
    if isinstance(value, str) and not value.isascii():
        return _BIDI.sub("", value)
    return value


def templates(clock: Clock, names: Mapping[str, tuple[str, str]] | None = None) -> Environment:
    """The console's pages; `t` shows a value in both languages (`names`: the platforms')."""
    env = Environment(
        loader=FileSystemLoader(Path(__file__).resolve().parent / "templates"),
        autoescape=select_autoescape(["html"]),
        finalize=unbidi,
    )
    env.filters.update(duration=duration, percent=percent, when=clock.when, md=markdown)
    env.filters["t"] = lambda value: words(value, names)
    env.filters["score"] = lambda v: "—" if v is None else f"{v:.3f}"
    env.filters["rank"] = lambda v: "—" if v is None else f"#{v}"
    env.globals["zone"] = clock.zone_name
    return env
