"""Retention: the daily purge removes what is past retention_days and keeps the rest."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.messages import Answer, ChatType, Inbound, Outcome, Sender, ThreadKey
from engine.store.conversations import ConversationStore
from jobs.retention import purge_expired


def message(key: ThreadKey, message_id: str, text: str) -> Inbound:
    return Inbound(
        platform=key.platform, tenant=key.tenant, chat_id=key.chat_id, chat_type=ChatType.GROUP,
        thread_id=key.thread_id, message_id=message_id, sender=Sender("u1", "Ada"), text=text,
    )  # fmt: skip


async def test_purge_removes_only_what_is_past_retention(store: ConversationStore) -> None:
    old_key, live_key = ThreadKey("slack", "T", "C", "old"), ThreadKey("slack", "T", "C", "live")
    old, live = await store.thread(old_key), await store.thread(live_key)
    for key, thread, mid in ((old_key, old, "m1"), (live_key, live, "m2")):
        await store.claim_event("slack", mid, key)
        turn = await store.add_turn(
            thread.id, message(key, mid, "q"), Answer("a", Outcome.ANSWERED)
        )
        await store.add_feedback(turn, "u1", "up")
    # a year and a bit later, the live thread gets a new question; the old one stayed quiet
    later = datetime.now(UTC) + timedelta(days=400)
    await store.claim_event("slack", "m3", live_key)
    fresh = await store.add_turn(
        live.id, message(live_key, "m3", "again"), Answer("b", Outcome.ANSWERED)
    )
    # add_turn stamps "now"; move the live thread's clock forward as if it were asked `later`
    from sqlalchemy import update

    from engine.store.tables import ProcessedEvent, Thread, Turn

    async with store.engine.begin() as conn:
        await conn.execute(update(Thread).where(Thread.id == live.id).values(last_message_at=later))
        await conn.execute(update(Turn).where(Turn.id == fresh).values(created_at=later))
        await conn.execute(
            update(ProcessedEvent)
            .where(ProcessedEvent.message_id == "m3")
            .values(received_at=later)
        )
    counts = await purge_expired(store, 365, now=later + timedelta(hours=1))
    assert counts == {"threads": 1, "turns": 2, "feedback": 2, "events": 2, "attachments": 0}
    assert await store.thread_by_id(old.id) is None
    assert await store.thread_by_id(live.id) is not None
    remaining = await store.history(live.id, 10)
    assert [t.question for t in remaining] == ["again"]
    assert await purge_expired(store, 0, now=later) is None  # 0 keeps everything
