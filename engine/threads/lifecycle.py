"""A thread's life after the first answer: escalate to a person, a person takes it, resolve,
feedback, a person replied (docs/architecture.md, "Thread lifecycle")."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from engine import metrics
from engine.answer import ending
from engine.messages import (
    Answer,
    ChatType,
    Citation,
    Click,
    EscalationNotice,
    Inbound,
    Outcome,
    ThreadKey,
)
from engine.ports import ReplyChannel, ReplyFor
from engine.store.conversations import ConversationStore, ThreadRecord, TurnRecord
from engine.store.tables import ThreadState
from engine.text import clip
from engine.threads.escalation import (
    NEGATIVE_FEEDBACK,
    EscalationSettings,
    asks_for_human,
    follow_up,
    resolves,
)

log = logging.getLogger(__name__)

_PEOPLE_OWN = (ThreadState.ESCALATED, ThreadState.HUMAN)  # the bot records, says nothing


class NothingAsked(LookupError):
    """An escalation of a thread where nobody asked anything: refused, nothing is recorded."""


def _asked(record: TurnRecord) -> bool:
    return bool(record.question.strip()) and record.outcome is not Outcome.COMMAND


class ThreadLifecycle:
    """State changes of a thread and what they tell people; Conversation composes one."""

    def __init__(
        self, store: ConversationStore, escalation: EscalationSettings, *, history_turns: int
    ) -> None:
        self._store = store
        self.escalation = escalation  # per chat: .for_chat(platform, chat_id)
        self._history_turns = history_turns

    async def clicked(self, click: Click, reply: ReplyChannel | ReplyFor | None = None) -> None:
        """A button on an answer or a thread (engine.ports.Core.clicked says what each does)."""
        if click.action != "human":
            await self._feedback(click, reply)
            return
        key = click.thread
        if click.turn_id is not None:
            key = (await self._turn_thread(click)).key
        assert key is not None  # a "human" click names its turn or its thread
        await self.escalate(key, reply, trigger=click.trigger, requested_by=click.user_id)

    async def escalate(
        self,
        key: ThreadKey,
        reply: ReplyChannel | ReplyFor | None,
        *,
        trigger: str,
        requested_by: str = "",
    ) -> None:
        """Hand the thread to a person (a "Talk to a person" button, negative feedback).

        Raises NothingAsked for a thread in which nobody asked anything (unknown, or commands
        only): there is nothing for a person to answer, and no blank escalation is made."""
        thread = await self._store.find_thread(key)
        if thread is None:
            raise NothingAsked(f"no thread {key}")
        channel = _channel(reply, thread)
        if channel is None:
            log.info("escalation of %s asked without a reply channel: not possible", key)
            return
        escalation = self.escalation.for_chat(key.platform, key.chat_id)
        if thread.state in (ThreadState.ESCALATED, ThreadState.HUMAN):
            return
        if not escalation.enabled(trigger):
            return
        history = await self._store.history(thread.id, self._history_turns)
        if not any(_asked(r) for r in history):
            raise NothingAsked(f"nothing was asked in {key}")
        language = history[-1].language
        text = await self.hand_off(thread, channel, trigger, language)
        await channel.finish(Answer(text=text, outcome=Outcome.HANDED_OFF, language=language))
        log.info("thread %s escalated by %s (%s)", key, requested_by or "policy", trigger)

    async def agent_wrote(self, inbound: Inbound) -> bool:
        """An agent's message in a group, where people own the conversation: in a thread that is
        escalated or taken, or — where the platform has no threads — in a chat where escalated
        askers wait (those the agent @mentions, else all of them). There it is a person's reply,
        recorded once and never answered; True when it was one."""
        if not inbound.sender.is_agent or inbound.chat_type is not ChatType.GROUP:
            return False
        keys = await self._owned_by_people(inbound)
        if not keys:
            return False
        platform, message_id = inbound.platform, inbound.message_id
        if not await self._store.claim_event(platform, message_id, inbound.thread_key):
            metrics.DEDUPLICATED.labels(platform).inc()
            return True  # a redelivery: recorded the first time
        agent = inbound.sender.id
        for key in keys:
            if await self.human_replied(key, agent, inbound.text):
                log.info("%s taken over by agent %s", key, agent)
        await ending.mark(self._store.mark_answered, platform, message_id)  # nothing to answer
        return True

    async def continued(self, inbound: Inbound) -> Inbound:
        """Which thread a message belongs to where the platform has none (DingTalk), decided
        here from the store so it holds across restarts and replicas: the thread a person owns
        for the asker in this chat, if any (the bot stays quiet while the person handles it);
        else the asker's latest thread in this chat if a message came in it within the idle
        window (`Inbound.idle_window`); else a new one, named by the asker and the time."""
        if inbound.threaded:
            return inbound
        asker = inbound.sender.id
        if not inbound.sender.is_agent:
            owned = await self._store.waiting_threads(
                inbound.platform, inbound.tenant, inbound.chat_id, states=_PEOPLE_OWN
            )
            mine = [thread.key for thread, opener in owned if opener == asker]
            if mine:
                return replace(inbound, thread_id=mine[-1].thread_id)
        now = datetime.now(UTC)
        latest = await self._store.latest_thread(
            inbound.platform,
            inbound.tenant,
            inbound.chat_id,
            asker,
            since=now - timedelta(seconds=inbound.idle_window),
        )
        thread_id = latest.key.thread_id if latest else f"{asker}@{int(now.timestamp() * 1000)}"
        return replace(inbound, thread_id=thread_id)

    async def _owned_by_people(self, inbound: Inbound) -> list[ThreadKey]:
        """The threads a person owns that an agent's message in this chat goes to."""
        if inbound.threaded:
            thread = await self._store.find_thread(inbound.thread_key)
            owned = thread is not None and thread.state in _PEOPLE_OWN
            return [inbound.thread_key] if owned else []
        waiting = await self._store.waiting_threads(
            inbound.platform, inbound.tenant, inbound.chat_id
        )
        named = [thread.key for thread, asker in waiting if asker in inbound.mentions]
        return named or [thread.key for thread, _ in waiting]

    async def human_replied(self, key: ThreadKey, agent_id: str, text: str = "") -> bool:
        """An agent wrote in an escalated thread: it is theirs now and the bot stays quiet.

        `text` (what the agent wrote) is kept for the learning loop and starts the first-response
        clock; True only when this message took an escalated thread over."""
        thread = await self._store.thread(key)
        if thread.state not in (ThreadState.ESCALATED, ThreadState.HUMAN):
            return False
        took = thread.state == ThreadState.ESCALATED
        if took:
            await self.take(thread.id, agent_id)
        if text.strip() and not resolves(text) and not asks_for_human(text):
            await self._store.add_human_reply(thread.id, text.strip())
            now = datetime.now(UTC)
            handoff = await self._store.handoffs.record_human_message(
                thread.id, agent_id, text, now=now
            )
            if handoff is not None and handoff.responded_at == now:
                metrics.HANDOFF_FIRST_RESPONSE.labels(key.platform).observe(
                    (now - handoff.escalated_at).total_seconds()
                )
        return took

    async def take(self, thread_id: int, agent: str) -> ThreadRecord:
        """A person takes the thread (console "take", or their message in it): the bot goes quiet."""
        thread = await self._store.thread_by_id(thread_id)
        if thread is None:
            raise LookupError(f"no thread with id {thread_id}")
        return await self._store.set_state(
            thread.id, ThreadState.HUMAN, taken_by=agent, trigger=thread.escalation_trigger
        )

    async def resolve(
        self, thread_id: int, *, by: str, now: datetime | None = None
    ) -> ThreadRecord | None:
        """Mark the thread resolved (console, idle timeout); None when it already was."""
        thread = await self._store.thread_by_id(thread_id)
        if thread is None:
            raise LookupError(f"no thread with id {thread_id}")
        if thread.state == ThreadState.RESOLVED:
            return None
        resolved = await self._store.set_state(
            thread.id,
            ThreadState.RESOLVED,
            taken_by=thread.taken_by,
            trigger=thread.escalation_trigger,
            by=by,
            now=now,
        )
        await self.observe_resolution(thread.id)
        return resolved

    async def observe_resolution(self, thread_id: int) -> None:
        """Record how long the handoff took, once the thread is resolved."""
        handoff = await self._store.handoffs.latest(thread_id)
        if handoff is not None and handoff.resolved_at is not None:
            seconds = (handoff.resolved_at - handoff.escalated_at).total_seconds()
            metrics.HANDOFF_RESOLUTION.labels(handoff.key.platform).observe(max(seconds, 0.0))

    async def hand_off(
        self,
        thread: ThreadRecord,
        reply: ReplyChannel,
        trigger: str,
        language: str,
        *,
        question: str = "",
        citations: tuple[Citation, ...] = (),
    ) -> str:
        """Mark the thread escalated, notify the human channel; returns what to tell the asker
        (when a person will answer, by the chat's escalation settings)."""
        thread_id, key = thread.id, thread.key
        records = await self._store.history(thread_id, self._history_turns)
        asked = [
            r.question for r in records if r.question.strip() and r.outcome is not Outcome.COMMAND
        ]
        summary = "\n".join(f"Q: {r.question}\nA: {clip(r.answer, 300)}" for r in records[-3:])
        asked_now = question or (asked[-1] if asked else "")
        await self._store.set_state(
            thread_id, ThreadState.ESCALATED, trigger=trigger, question=asked_now
        )
        metrics.ESCALATIONS.labels(key.platform, trigger).inc()
        await reply.post_escalation(
            EscalationNotice(
                thread=key,
                question=asked_now,
                trigger=trigger,
                summary=summary,
                citations=citations or (records[-1].citations if records else ()),
            )
        )
        escalation = self.escalation.for_chat(key.platform, key.chat_id)
        return follow_up(datetime.now(UTC), escalation, language)

    async def _turn_thread(self, click: Click) -> ThreadRecord:
        """The thread of the clicked turn; LookupError when there is no such turn, or it is not
        in `click.chat` when that is given (the web chat rates only the asker's own chat)."""
        assert click.turn_id is not None
        turn = await self._store.turn(click.turn_id)
        thread = await self._store.thread_by_id(turn.thread_id) if turn else None
        chat = click.chat
        where = (thread.key.platform, thread.key.tenant, thread.key.chat_id) if thread else None
        if where is None or (chat is not None and where != chat):
            raise LookupError(f"no turn {click.turn_id}" + (" in this chat" if chat else ""))
        assert thread is not None
        return thread

    async def _feedback(self, click: Click, reply: ReplyChannel | ReplyFor | None) -> None:
        """Record a helpful ("up") / not helpful ("down") click (a user's later click replaces
        it); "down" escalates where the channel says so and the adapter gave a reply channel."""
        thread = await self._turn_thread(click)
        assert click.turn_id is not None
        await self._store.add_feedback(click.turn_id, click.user_id, click.action, click.comment)
        if click.action == "down" and reply is not None:
            try:
                await self.escalate(
                    thread.key, reply, trigger=NEGATIVE_FEEDBACK, requested_by=click.user_id
                )
            except NothingAsked:  # "not helpful" on a command's reply: nothing to hand over
                log.info("feedback on %s: nothing asked there to escalate", thread.key)


def _channel(reply: ReplyChannel | ReplyFor | None, thread: ThreadRecord) -> ReplyChannel | None:
    """The reply channel into `thread`: the one given, or made for it."""
    if isinstance(reply, ReplyFor):
        return reply(thread.key, thread.chat_type)
    return reply
