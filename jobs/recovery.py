"""Recovery that runs all the time: questions that were claimed but never got a final message
(the process was killed, crashed, or stopped before it could tell the asker) get one apology in
their thread.

A sweeper job runs every `[server] recovery_sweep_seconds` on one replica at a time (the job
lock of jobs/lock.py) and takes events older than their deadline — longer than any live answer
can take, since a live process always ends its answers itself (engine/answer/ending.py). Each event is
taken with one atomic UPDATE, so across replicas and restarts every question gets one apology.
The question of the lost turn is stored with the apology, so the console shows what was asked.
What this process is still answering, however slowly, is passed in (`answering`): those are
left alone, since they will end by themselves.

With several replicas a dead one is noticed sooner: `handover` builds this process's heartbeat
(jobs/handover.py), which gives the turns of a replica whose heartbeat lapsed the same apology
(`apologise_event`) within seconds; the deadline sweep stays as the fallback (one process, or
a turn no heartbeat covers).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Container, Mapping, Sequence
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from engine.catalog import lines
from engine.messages import Answer, ChatType, Inbound, Outcome, Sender, ThreadKey
from engine.store import ConversationStore
from engine.store.records import UnansweredEvent
from jobs.handoff import Reachable
from jobs.handover import Handover
from jobs.lock import job_lock

log = logging.getLogger(__name__)

APOLOGY = lines("apology_restarted")  # the asker's language is not kept with the event
JOB = "recovery:sweep"


async def apologise_for_unanswered(
    store: ConversationStore,
    adapters: Sequence[Reachable],
    *,
    window: timedelta,
    grace: timedelta,
    answering: Container[tuple[str, str]] = (),
    now: datetime | None = None,
) -> tuple[int, int]:
    """Apologise in the thread of every event received within `window` and not answered, leaving
    alone events younger than `grace` (another replica may still be answering them) and those
    this process is `answering` ((platform, message id) pairs).

    Returns (apologised, unreachable). Each event is taken atomically, so when several replicas
    run this together, each question gets one apology."""
    now = now or datetime.now(UTC)
    by_platform = {adapter.name: adapter for adapter in adapters}
    apologised = unreachable = 0
    for event in await store.upkeep.unanswered_events(
        older_than=now - grace, newer_than=now - window
    ):
        told = await apologise_event(store, by_platform, event, answering=answering)
        if told is not None:
            apologised += told
            unreachable += not told
    if apologised or unreachable:
        log.info("recovery: %d apologies sent, %d could not be sent", apologised, unreachable)
    return apologised, unreachable


async def apologise_event(
    store: ConversationStore,
    by_platform: Mapping[str, Reachable],
    event: UnansweredEvent,
    *,
    answering: Container[tuple[str, str]] = (),
) -> bool | None:
    """Take one unanswered event and apologise in its thread: True told, False the platform
    cannot post there (or failed to), None not taken — still being answered in this process
    (`answering`), or another replica took it. The crash sweeper and the handover
    (jobs/handover.py) share it."""
    if (event.platform, event.message_id) in answering:
        return None  # still being answered here, however slowly: it will end by itself
    if not await store.mark_answered(event.platform, event.message_id):
        return None  # another replica took it
    adapter = by_platform.get(event.platform)
    channel = (
        adapter.reply_channel(event.thread_key, await chat_type(store, event.thread_key))
        if adapter
        else None
    )
    told = False
    if channel is None:
        log.warning(
            "message %s/%s was never answered and %s cannot post unprompted",
            event.platform,
            event.message_id,
            event.platform,
        )
    else:
        try:
            await channel.finish(Answer(text=APOLOGY, outcome=Outcome.FAILED))
            told = True
        except Exception:  # one failed apology must not stop the others
            log.exception("could not apologise for %s/%s", event.platform, event.message_id)
    await _audit(store, event)
    return told


async def chat_type(store: ConversationStore, key: ThreadKey) -> ChatType | None:
    """The thread's chat type as the store keeps it (None: unknown, or the store failed), so a
    platform that replies differently to a group and one to one picks right after a restart."""
    try:
        found = await store.find_thread(key)
    except Exception as error:  # the apology matters more than where exactly it goes
        log.warning("chat type of %s not read: %s", key, error)
        return None
    return found.chat_type if found is not None else None


async def _audit(store: ConversationStore, event: UnansweredEvent) -> None:
    """Store the lost turn (its question, the apology) so the console shows what was asked."""
    key = event.thread_key
    inbound = Inbound(
        platform=event.platform,
        tenant=key.tenant,
        chat_id=key.chat_id,
        chat_type=ChatType.GROUP,
        thread_id=key.thread_id,
        message_id=event.message_id,
        sender=Sender(id=event.asker_id),
        text=event.question,
        sent_at=event.received_at,
    )
    try:
        thread = await store.thread(key)
        await store.add_turn(thread.id, inbound, Answer(text=APOLOGY, outcome=Outcome.FAILED))
    except Exception as error:  # the apology went out; the record is a nice-to-have
        log.warning("lost turn %s/%s not recorded: %s", event.platform, event.message_id, error)


async def sweep(
    store: ConversationStore,
    adapters: Sequence[Reachable],
    *,
    deadline: timedelta,
    window: timedelta,
    answering: Container[tuple[str, str]],
) -> tuple[int, int]:
    """One sweep on the replica that holds the job lock; (0, 0) on the others."""
    async with job_lock(store.engine, JOB) as held:
        if not held:
            return 0, 0
        return await apologise_for_unanswered(
            store, adapters, window=window, grace=deadline, answering=answering
        )


def schedule_recovery(
    scheduler: AsyncIOScheduler,
    store: ConversationStore,
    adapters: Sequence[Reachable],
    *,
    every: float,
    deadline: timedelta,
    window: timedelta,
    answering: Container[tuple[str, str]],
) -> None:
    """Sweep every `every` seconds, the first time right away (a restart after a crash)."""
    scheduler.add_job(
        sweep,
        IntervalTrigger(seconds=every),
        args=(store, adapters),
        kwargs={"deadline": deadline, "window": window, "answering": answering},
        id=JOB,
        name="apologise for questions a crash or stop left unanswered",
        max_instances=1,
        coalesce=True,
        next_run_time=datetime.now(UTC),
        replace_existing=True,
    )


def handover(
    store: ConversationStore,
    adapters: Sequence[Reachable],
    *,
    every: float,
    lapse: float,
    window: timedelta,
    answering: Container[tuple[str, str]],
) -> Handover:
    """This process's heartbeat, taking over the turns of replicas that died (jobs/handover.py)
    with the same apology as the sweeper."""
    by_platform = {adapter.name: adapter for adapter in adapters}
    apologise = functools.partial(apologise_event, store, by_platform, answering=answering)
    return Handover(store.replicas, apologise, every=every, lapse=lapse, window=window)
