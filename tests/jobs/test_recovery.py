"""Crash recovery: an unanswered question gets one apology, across replicas starting together."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from adapters.base import AdapterStatus, Check
from adapters.web.adapter import WebReplyChannel
from engine.messages import ThreadKey
from engine.ports import ReplyChannel
from engine.store.conversations import ConversationStore
from jobs.recovery import APOLOGY, apologise_for_unanswered


class PushingAdapter:
    """A platform that can post into a thread unprompted; records what it posted."""

    def __init__(self, name: str, can_push: bool = True) -> None:
        self.name, self.can_push = name, can_push
        self.posted: list[tuple[ThreadKey, str]] = []

    def reply_channel(self, key: ThreadKey, chat_type: object = None) -> ReplyChannel | None:
        if not self.can_push:
            return None
        adapter = self

        class Channel(WebReplyChannel):
            async def finish(self, answer):  # type: ignore[no-untyped-def]
                adapter.posted.append((key, answer.text))

        return Channel()

    def router(self):  # type: ignore[no-untyped-def]
        return None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> AdapterStatus:
        return AdapterStatus(connected=True)

    async def check(self) -> list[Check]:
        return []


KEY = ThreadKey("slack", "T1", "C1", "171.1")


async def test_unanswered_question_gets_one_apology_across_replicas(
    store: ConversationStore,
) -> None:
    await store.claim_event("slack", "m-lost", KEY)
    await store.claim_event("slack", "m-fine", KEY)
    await store.mark_answered("slack", "m-fine")
    later = datetime.now(UTC) + timedelta(minutes=10)  # the restart happens 10 minutes later
    one, two = PushingAdapter("slack"), PushingAdapter("slack")
    results = await asyncio.gather(
        apologise_for_unanswered(
            store, [one], window=timedelta(hours=1), grace=timedelta(minutes=5), now=later
        ),
        apologise_for_unanswered(
            store, [two], window=timedelta(hours=1), grace=timedelta(minutes=5), now=later
        ),
    )
    assert sorted(results) == [(0, 0), (1, 0)]
    posted = one.posted + two.posted
    assert posted == [(KEY, APOLOGY)]
    assert "请再问一次" in APOLOGY and "ask it again" in APOLOGY
    again = await apologise_for_unanswered(
        store, [one], window=timedelta(hours=1), grace=timedelta(minutes=5), now=later
    )
    assert again == (0, 0)


async def test_recent_and_old_events_are_left_alone(store: ConversationStore) -> None:
    await store.claim_event("slack", "m-now", KEY)
    adapter = PushingAdapter("slack")
    now = datetime.now(UTC)
    assert await apologise_for_unanswered(
        store, [adapter], window=timedelta(hours=1), grace=timedelta(minutes=5), now=now
    ) == (0, 0)  # still inside the grace period: another replica may be answering it
    much_later = now + timedelta(days=2)
    assert await apologise_for_unanswered(
        store, [adapter], window=timedelta(hours=1), grace=timedelta(minutes=5), now=much_later
    ) == (0, 0)  # outside the window: too late to be useful
    assert adapter.posted == []


async def test_platform_that_cannot_push_is_counted(store: ConversationStore) -> None:
    await store.claim_event("web", "m-web", ThreadKey("web", "local", "c", "t"))
    later = datetime.now(UTC) + timedelta(minutes=10)
    result = await apologise_for_unanswered(
        store, [PushingAdapter("web", can_push=False)], window=timedelta(hours=1),
        grace=timedelta(minutes=5), now=later,
    )  # fmt: skip
    assert result == (0, 1)


async def test_a_question_this_process_is_still_answering_gets_no_apology(
    store: ConversationStore,
) -> None:
    """However slowly it goes, an answer this process is working on ends by itself: the sweep
    leaves it alone, and apologises once it is no longer being answered and still unanswered."""
    await store.claim_event("slack", "m-slow", KEY)
    later = datetime.now(UTC) + timedelta(minutes=10)
    adapter = PushingAdapter("slack")
    answering = {("slack", "m-slow")}
    window, grace = timedelta(hours=1), timedelta(minutes=5)
    assert await apologise_for_unanswered(
        store, [adapter], window=window, grace=grace, answering=answering, now=later
    ) == (0, 0)
    assert adapter.posted == []
    answering.clear()  # the answer was cut short without a final message
    assert await apologise_for_unanswered(
        store, [adapter], window=window, grace=grace, answering=answering, now=later
    ) == (1, 0)
    assert adapter.posted == [(KEY, APOLOGY)]
