"""Prometheus series of the conversation core (the HTTP server exposes them at /metrics)."""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict

from prometheus_client import Counter, Gauge, Histogram

from engine.messages import Answer, Outcome
from engine.store.handoff_records import Figures

_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2, 3, 5, 8, 13, 21, 34, 60, 120)

RECEIVED = Counter("teambot_messages_received", "Messages that reached the core", ["platform"])
DEDUPLICATED = Counter(
    "teambot_messages_deduplicated", "Redelivered messages dropped by the dedupe key", ["platform"]
)
IGNORED = Counter(
    "teambot_messages_ignored", "Messages not answered by policy", ["platform", "reason"]
)
ANSWERS = Counter("teambot_answers", "Answers given, by outcome", ["platform", "outcome"])
RATE_LIMIT_FALLBACKS = Counter(
    "teambot_rate_limit_fallbacks",
    "Rate-limit decisions taken on this replica's own buckets because Redis was unreachable",
)
RATE_LIMITS_SHARED = Gauge(
    "teambot_rate_limits_shared",
    "1 while rate limits are shared through Redis, 0 while this replica limits on its own",
)
ATTACHMENTS = Counter(
    "teambot_attachments",
    "Attachments taken, by kind and whether they were read",
    ["platform", "kind", "outcome"],
)
ESCALATIONS = Counter("teambot_escalations", "Threads handed to a human", ["platform", "trigger"])
FIRST_VISIBLE = Histogram(
    "teambot_first_visible_seconds",
    "Message received to first visible answer text",
    ["platform"],
    buckets=_LATENCY,
)
ANSWER_TIME = Histogram(
    "teambot_answer_seconds", "Message received to final answer", ["platform"], buckets=_LATENCY
)
RETRIEVAL_TIME = Histogram(
    "teambot_retrieval_seconds",
    "Knowledge retrieval latency",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5),
)
NO_GROUNDING = Counter(
    "teambot_no_grounding", "Questions with nothing relevant in the knowledge base"
)
MODEL_FIRST_TOKEN = Histogram(
    "teambot_model_first_token_seconds", "Model request to first token", buckets=_LATENCY
)
MODEL_TOKENS_PER_SECOND = Histogram(
    "teambot_model_tokens_per_second",
    "Completion tokens per second of streaming",
    buckets=(1, 5, 10, 20, 30, 50, 75, 100, 150, 250, 500),
)
PROMPT_TOKENS = Counter("teambot_model_prompt_tokens", "Prompt tokens sent to the model")
CACHED_TOKENS = Counter(
    "teambot_model_cached_tokens", "Prompt tokens the server reported as prefix-cache hits"
)
CACHE_HIT_RATIO = Histogram(
    "teambot_model_prefix_cache_hit_ratio",
    "cached_tokens / prompt_tokens per request (servers started with --enable-cache-report)",
    buckets=(0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 1.0),
)
ANSWER_ERRORS = Counter(
    "teambot_answer_errors",
    "Answers that raised inside the core (the asker got a polite failure), by error",
    ["platform", "error"],
)
MODEL_ERRORS = Counter("teambot_model_errors", "Model server failures", ["kind"])
MODEL_ENDINGS = Counter(
    "teambot_model_endings",
    "How streamed model answers ended: stop, length, server_error, server_full, own_timeout, "
    "stalled, too_long",
    ["ending"],
)
PROMPT_TRIMMED = Counter(
    "teambot_prompt_trimmed",
    "History turns and passages left out to fit the model's context",
    ["part"],
)
FOLLOWUP_QUERIES = Counter(
    "teambot_followup_queries", "Follow-ups made standalone before retrieval", ["how"]
)
REPEATED_ANSWERS = Counter(
    "teambot_repeated_answers",
    "The same answer text given to a different question within the repeat window",
)


_HANDOFF = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 28800, 86400, 259200)
HANDOFF_FIRST_RESPONSE = Histogram(
    "teambot_handoff_first_response_seconds",
    "Escalation to the first message a person wrote in the thread",
    ["platform"],
    buckets=_HANDOFF,
)
HANDOFF_RESOLUTION = Histogram(
    "teambot_handoff_resolution_seconds",
    "Escalation to resolution of a handed-off thread",
    ["platform"],
    buckets=_HANDOFF,
)
HANDOFF_REMINDERS = Counter(
    "teambot_handoff_reminders", "Escalations re-notified after the SLA passed", ["level"]
)
IDLE_RESOLVED = Counter("teambot_threads_idle_resolved", "Threads closed by the idle timeout")
FAQ_CANDIDATES = Counter(
    "teambot_faq_candidates_decided", "FAQ candidates approved or rejected", ["decision"]
)
# Figures over the last FIGURES_WINDOW, recomputed from the database by the figures job (each
# replica computes the same numbers, so take max() or any one replica's series).
ESCALATION_RATE = Gauge(
    "teambot_escalation_rate", "Share of active threads handed to a person (last 7 days)"
)
FIRST_RESPONSE_MEDIAN = Gauge(
    "teambot_handoff_first_response_median_seconds",
    "Median escalation to first human response (last 7 days)",
)
RESOLUTION_MEDIAN = Gauge(
    "teambot_handoff_resolution_median_seconds",
    "Median escalation to resolution (last 7 days)",
)
RESOLVED_SHARE = Gauge(
    "teambot_resolved_share", "Share of resolved threads by who resolved them (last 7 days)", ["by"]
)


def record_figures(figures: Figures) -> None:
    """Set the figure gauges (NaN where there is nothing to measure yet)."""
    nan = float("nan")
    rate, bot, human = figures.escalation_rate, figures.bot_share, figures.human_share
    ESCALATION_RATE.set(nan if rate is None else rate)
    first, resolution = figures.first_response_median, figures.resolution_median
    FIRST_RESPONSE_MEDIAN.set(nan if first is None else first)
    RESOLUTION_MEDIAN.set(nan if resolution is None else resolution)
    RESOLVED_SHARE.labels("bot").set(nan if bot is None else bot)
    RESOLVED_SHARE.labels("human").set(nan if human is None else human)


class RepeatWatch:
    """Counts answers repeated verbatim for different questions (a stuck model or prompt)."""

    def __init__(self, window: float = 3600.0, size: int = 5000) -> None:
        self._window, self._size = window, size
        self._seen: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def observe(self, question: str, answer: str) -> bool:
        """Record one answer; True when it repeats an answer given to another question."""
        now = time.monotonic()
        key = hashlib.sha1(" ".join(answer.split()).encode()).hexdigest()
        asked = hashlib.sha1(" ".join(question.lower().split()).encode()).hexdigest()
        while self._seen and (
            len(self._seen) > self._size or next(iter(self._seen.values()))[1] < now - self._window
        ):
            self._seen.popitem(last=False)
        previous = self._seen.pop(key, None)
        self._seen[key] = (asked, now)
        repeated = previous is not None and previous[0] != asked
        if repeated:
            REPEATED_ANSWERS.inc()
        return repeated


def record_answer(platform: str, answer: Answer) -> None:
    """Series that every finished answer feeds."""
    ANSWERS.labels(platform, answer.outcome.value).inc()
    timings = answer.timings
    ANSWER_TIME.labels(platform).observe(timings.total)
    if timings.first_visible is not None:
        FIRST_VISIBLE.labels(platform).observe(timings.first_visible)
    elif answer.outcome is not Outcome.HANDED_OFF:
        FIRST_VISIBLE.labels(platform).observe(timings.total)
    usage = answer.usage
    if usage.prompt_tokens:
        PROMPT_TOKENS.inc(usage.prompt_tokens)
        if usage.cached_tokens is not None:
            CACHED_TOKENS.inc(usage.cached_tokens)
            CACHE_HIT_RATIO.observe(usage.cached_tokens / usage.prompt_tokens)
    if timings.first_token is not None:
        MODEL_FIRST_TOKEN.observe(max(timings.first_token - timings.retrieval, 0.0))
        streaming = timings.total - timings.first_token
        if usage.completion_tokens and streaming > 0:
            MODEL_TOKENS_PER_SECOND.observe(usage.completion_tokens / streaming)
