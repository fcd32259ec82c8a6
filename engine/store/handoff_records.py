"""What a handoff looks like outside the store, and the figures computed from handoffs.

A handoff is one escalation of a thread: when it was escalated, taken, first answered by a
person and resolved. The figures (escalation rate, time to first human response, resolution
time, bot- vs human-resolved share) feed the console's dashboard and the Prometheus gauges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from engine.messages import ThreadKey
from engine.store.tables import CandidateStatus, ThreadState

__all__ = [
    "CandidateRecord",
    "Figures",
    "HandoffRecord",
    "ThreadSummary",
    "figures",
    "percentile",
]


@dataclass(frozen=True, slots=True)
class HandoffRecord:
    id: int
    thread_id: int  # threads.id
    key: ThreadKey
    state: ThreadState  # the thread's state now
    trigger: str
    question: str
    escalated_at: datetime
    taken_at: datetime | None
    taken_by: str | None
    responded_at: datetime | None
    answer: str
    renotified: int
    resolved_at: datetime | None
    resolved_by: str | None

    def waiting_minutes(self, now: datetime) -> float:
        """Minutes from the escalation to the first human reply (or to `now` while none);
        taking a thread is not a reply."""
        end = self.responded_at or now
        return (end - self.escalated_at).total_seconds() / 60


@dataclass(frozen=True, slots=True)
class CandidateRecord:
    id: int
    thread_id: int
    handoff_id: int
    question: str
    answer: str
    answered_by: str
    status: CandidateStatus
    created_at: datetime
    decided_at: datetime | None
    decided_by: str | None


@dataclass(frozen=True, slots=True)
class ThreadSummary:
    """One line of the Conversations page."""

    id: int
    key: ThreadKey
    state: ThreadState
    turns: int
    first_question: str
    last_outcome: str
    last_message_at: datetime
    asker: str = ""  # who asked the first question (display name, else platform id)


@dataclass(frozen=True, slots=True)
class Figures:
    """Handoff figures over a window; times in seconds, None when there is nothing to measure."""

    since: datetime
    until: datetime
    threads: int  # threads with a message in the window
    escalated: int  # ...of which were handed to a person
    first_response_median: float | None
    first_response_p90: float | None
    resolution_median: float | None
    resolution_p90: float | None
    bot_resolved: int  # resolved without a person
    human_resolved: int  # resolved after a person took over
    responded: int  # handoffs with a human response in the window

    @property
    def escalation_rate(self) -> float | None:
        return self.escalated / self.threads if self.threads else None

    @property
    def bot_share(self) -> float | None:
        total = self.bot_resolved + self.human_resolved
        return self.bot_resolved / total if total else None

    @property
    def human_share(self) -> float | None:
        total = self.bot_resolved + self.human_resolved
        return self.human_resolved / total if total else None


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of `values` (None when empty)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, round(fraction * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def figures(
    since: datetime,
    until: datetime,
    *,
    active_threads: int,
    escalated_threads: int,
    handoffs: Sequence[HandoffRecord],
    resolved_without_handoff: int,
) -> Figures:
    """The figures from the handoffs escalated in [since, until) and the thread counts."""
    first = [  # the first reply a person wrote; a Take alone answers nobody
        (h.responded_at - h.escalated_at).total_seconds()
        for h in handoffs
        if h.responded_at is not None
    ]
    resolution = [
        (h.resolved_at - h.escalated_at).total_seconds()
        for h in handoffs
        if h.resolved_at is not None
    ]
    human_resolved = sum(
        1 for h in handoffs if h.resolved_at is not None and (h.taken_at or h.responded_at)
    )
    return Figures(
        since=since,
        until=until,
        threads=active_threads,
        escalated=escalated_threads,
        first_response_median=percentile(first, 0.5),
        first_response_p90=percentile(first, 0.9),
        resolution_median=percentile(resolution, 0.5),
        resolution_p90=percentile(resolution, 0.9),
        bot_resolved=resolved_without_handoff,
        human_resolved=human_resolved,
        responded=len(first),
    )
