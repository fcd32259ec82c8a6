"""After a crash: questions that were received but never answered get an apology at start."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from adapters.base import Adapter
from engine.messages import Answer, Outcome
from engine.store import ConversationStore

log = logging.getLogger(__name__)

APOLOGY = (
    "抱歉，我在回答您的问题时重启了，请再问一次。\n"
    "Sorry — I restarted while answering your question. Please ask it again."
)


async def apologise_for_unanswered(
    store: ConversationStore,
    adapters: Sequence[Adapter],
    *,
    window: timedelta,
    grace: timedelta,
    now: datetime | None = None,
) -> tuple[int, int]:
    """Apologise in the thread of every event received within `window` and not answered, leaving
    alone events younger than `grace` (another replica may still be answering them).

    Returns (apologised, unreachable). Each event is taken atomically, so when several replicas
    start together, each question gets one apology."""
    now = now or datetime.now(UTC)
    by_platform = {adapter.name: adapter for adapter in adapters}
    apologised = unreachable = 0
    for event in await store.unanswered_events(older_than=now - grace, newer_than=now - window):
        if not await store.mark_answered(event.platform, event.message_id):
            continue  # another replica took it
        adapter = by_platform.get(event.platform)
        channel = adapter.reply_channel(event.thread_key) if adapter else None
        if channel is None:
            unreachable += 1
            log.warning(
                "message %s/%s was never answered and %s cannot post unprompted",
                event.platform,
                event.message_id,
                event.platform,
            )
            continue
        try:
            await channel.finish(Answer(text=APOLOGY, outcome=Outcome.FAILED))
            apologised += 1
        except Exception:  # one failed apology must not stop the start
            unreachable += 1
            log.exception("could not apologise for %s/%s", event.platform, event.message_id)
    if apologised or unreachable:
        log.info("crash recovery: %d apologies sent, %d could not be sent", apologised, unreachable)
    return apologised, unreachable
