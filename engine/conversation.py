"""The conversation core: one inbound message in, one answer out through a ReplyChannel."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from engine import answers, clean, ending, metrics, stream
from engine.attachments import Attached, AttachmentReader, search_text
from engine.budget import Budget, Fitted, QuestionTooLong, fit
from engine.config import AttachmentSettings, ConversationSettings, PolicySettings
from engine.context import with_thread_context
from engine.escalation import (
    ASKED_FOR_HUMAN,
    MODEL_FAILURE,
    NO_GROUNDING,
    UNRESOLVED_TURNS,
    EscalationSettings,
    asks_for_human,
    resolves,
)
from engine.followup import Query, merge, standalone
from engine.language import detect, phrase
from engine.lifecycle import ThreadLifecycle
from engine.llm import LLMClient, LLMContextExceeded
from engine.messages import (
    Answer,
    ChatType,
    Inbound,
    Outcome,
    ThreadKey,
    Timings,
    Usage,
)
from engine.policy import Policy
from engine.ports import ReplyChannel
from engine.prompt import (
    HistoryTurn,
    trim_history,
)
from engine.replicas import still_ours
from engine.store import Claim, ConversationStore, ThreadRecord, TurnRecord
from engine.tables import ThreadState
from engine.trace import new_request_id
from engine.web import WebLookup, WebReport, WebSource
from knowledge import Passage, Reader, Retriever

log = logging.getLogger(__name__)

# Outcomes where the model server let the asker down: they may hand the thread to a person.
_MODEL_FAILED = (Outcome.RETRIEVAL_ONLY, Outcome.FAILED, Outcome.INTERRUPTED, Outcome.TIMED_OUT)


def _total(timings: Timings, started: float) -> Timings:
    """`timings` with the total set: seconds since the core took the message."""
    return replace(timings, total=time.monotonic() - started)


def reader_of(inbound: Inbound) -> Reader:
    """Who is asking, as knowledge's audience rules need it: in a group the chat itself reads
    (a passage must suit everyone in it), in a direct message the asker."""
    group = inbound.chat_type == ChatType.GROUP
    return Reader(
        platform=inbound.platform,
        tenant=inbound.tenant,
        chat_id=inbound.chat_id,
        chat_type="group" if group else "direct",
        user_id="" if group else inbound.sender.id,
    )


def _history(records: Sequence[TurnRecord]) -> list[HistoryTurn]:
    """Earlier turns as the model saw them: only turns the model answered, each user turn as it
    was sent and the model's own words; notices, retrieval-only and canned replies stay out."""
    return [HistoryTurn(r.prompt or r.question, r.model_text) for r in records if r.model_text]


class Conversation:
    """Answers messages: dedupe, history, retrieval, prompt, streamed model answer, persistence."""

    def __init__(
        self,
        settings: ConversationSettings,
        *,
        store: ConversationStore,
        retriever: Retriever,
        llm: LLMClient | None,
        instructions_as: str = "user",
        policy: Policy | None = None,
        escalation: EscalationSettings | None = None,
        web: WebLookup | None = None,
        attachments: AttachmentSettings | None = None,
    ) -> None:
        self._settings = settings
        self._reader = AttachmentReader(attachments or AttachmentSettings())
        self._web = web
        self._store = store
        self._retriever = retriever
        self._llm = llm
        self._instructions_as = "system" if instructions_as == "system" else "user"
        self._policy = policy or Policy(PolicySettings())
        self._repeats = metrics.RepeatWatch()
        self._lifecycle = ThreadLifecycle(
            store, escalation or EscalationSettings(), history_turns=settings.history_turns
        )

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """Answer `inbound` through `reply`; None when it was already handled (a redelivery) or
        is not for this bot (a chat or workspace outside the allowlists). Whatever fails inside,
        the asker gets a final message (engine/ending.py)."""
        return await ending.settle(self._handle, inbound, reply, self._store.mark_answered)

    async def _handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """The design's steps: accept, claim, decide (language, context, thread state, a person
        asked for), limit, answer (history, retrieval, web, model), escalate, finish."""
        started = time.monotonic()
        new_request_id(inbound.platform, inbound.message_id)
        metrics.RECEIVED.labels(inbound.platform).inc()
        if not await self._accepts(inbound):
            return None
        inbound = await self._lifecycle.continued(inbound)  # DingTalk: the person's thread
        escalation = self._lifecycle.escalation.for_chat(inbound.platform, inbound.chat_id)
        claim = await self._claim(inbound, escalation)
        if claim is None:
            return None
        language = inbound.language_hint or detect(inbound.text)
        inbound = with_thread_context(inbound, answered_before=bool(claim.history))
        thread = claim.thread
        if resolves(inbound.text):
            return await self._resolved_by_asker(thread, inbound, language, reply)
        if thread.state in (ThreadState.ESCALATED, ThreadState.HUMAN):
            # A person owns this thread: record the message, say nothing.
            answer = Answer(text="", outcome=Outcome.HANDED_OFF, language=language)
            return await self._persist(thread.id, inbound, answer)
        if thread.state == ThreadState.RESOLVED:
            thread = await self._store.set_state(thread.id, ThreadState.OPEN)
        if escalation.on_request and asks_for_human(inbound.text):
            text = await self._lifecycle.hand_off(
                thread.id, inbound.thread_key, reply, ASKED_FOR_HUMAN, escalation, language
            )
            answer = Answer(text=text, outcome=Outcome.HANDED_OFF, language=language)
            return await self._finish(thread.id, inbound, answer, reply)
        if (rejection := await self._rejection(inbound, language)) is not None:
            answer = Answer(text=rejection, outcome=Outcome.FAILED, language=language)
            return await self._finish(thread.id, inbound, answer, reply)
        await reply.open(language)
        attached = await self._attached(thread.id, inbound, language)
        if not inbound.text.strip() and not inbound.language_hint and attached.read_any:
            language = detect(search_text(attached.new))  # an image alone: the language it shows
        if not inbound.text.strip() and not attached.read_any:
            text = f"{attached.opening(language)}\n\n{phrase('text_only', language)}".strip()
            answer = Answer(text=text, outcome=Outcome.FAILED, language=language)
            return await self._finish(thread.id, inbound, answer, reply)
        question = inbound.text.strip()
        if (too_long := await self._too_long_alone(question, language, started)) is not None:
            return await self._finish(thread.id, inbound, too_long, reply)
        answer = await self._answer(inbound, claim.history, language, reply, started, attached)
        trigger = self._policy_trigger(thread, claim.history, answer, escalation)
        if trigger is not None:
            answer = await self._escalated(
                thread, inbound, answer, trigger, escalation, language, reply
            )
        return await self._finish(thread.id, inbound, answer, reply)

    async def _accepts(self, inbound: Inbound) -> bool:
        """On the allowlists, not an agent's reply where people own the conversation (recorded
        there instead: engine/lifecycle.py), and addressed to the bot."""
        if not self._policy.allowed(inbound):
            metrics.IGNORED.labels(inbound.platform, "not_allowed").inc()
            log.info(
                "message in %s:%s ignored: not on the allowlist", inbound.platform, inbound.chat_id
            )
            return False
        if inbound.sender.is_agent and await self._lifecycle.agent_wrote(inbound):
            return False
        if not await self._addressed(inbound):
            metrics.IGNORED.labels(inbound.platform, "not_addressed").inc()
            return False
        return True

    async def _claim(self, inbound: Inbound, escalation: EscalationSettings) -> Claim | None:
        """Dedupe, thread and its last turns in one transaction (the answer needs the history
        turns, the unresolved-turns trigger as many as it counts); None for a redelivery."""
        claim = await self._store.claim(
            inbound.platform,
            inbound.message_id,
            inbound.thread_key,
            max(self._settings.history_turns, escalation.max_unresolved_turns),
            question=inbound.text,  # for the audit record should this turn never finish
            asker=inbound.sender.id,
        )
        if claim is None:
            metrics.DEDUPLICATED.labels(inbound.platform).inc()
            log.info("duplicate message %s/%s dropped", inbound.platform, inbound.message_id)
        return claim

    async def _attached(self, thread_id: int, inbound: Inbound, language: str) -> Attached:
        """Read this message's attachments and keep them with the thread; with the thread's
        earlier ones (engine/attachments.py)."""
        earlier = await self._store.attachments.for_thread(thread_id)
        if not inbound.attachments:
            return Attached(earlier=tuple(earlier))
        reads = await self._reader.read_all(inbound.attachments, language)
        stored = await self._store.attachments.add(thread_id, inbound.message_id, reads)
        for read in stored:
            outcome = "read" if read.text else "unread"
            metrics.ATTACHMENTS.labels(inbound.platform, read.kind, outcome).inc()
            if not read.text:
                log.info("attachment %r (%s) not read: %s", read.name, read.kind, read.error)
        return Attached(new=tuple(stored), earlier=tuple(earlier))

    async def _resolved_by_asker(
        self, thread: ThreadRecord, inbound: Inbound, language: str, reply: ReplyChannel
    ) -> Answer | None:
        await self._store.set_state(
            thread.id, ThreadState.RESOLVED, taken_by=thread.taken_by, by="asker"
        )
        await self._lifecycle.observe_resolution(thread.id)
        answer = Answer(phrase("resolved", language), Outcome.COMMAND, language=language)
        return await self._finish(thread.id, inbound, answer, reply)

    async def _rejection(self, inbound: Inbound, language: str) -> str | None:
        """Why the message is not answered (empty, too long, rate limited), or None."""
        rejection = self._reject(inbound, language)
        if rejection is None and not await self._policy.within_limits(inbound):
            metrics.IGNORED.labels(inbound.platform, "rate_limited").inc()
            rejection = phrase("rate_limited", language)
        return rejection

    async def _answer(
        self,
        inbound: Inbound,
        turns: Sequence[TurnRecord],
        language: str,
        reply: ReplyChannel,
        started: float,
        attached: Attached,
    ) -> Answer:
        """History, the standalone query, retrieval, the web lookup, then the model's answer (or
        the passages alone, or "no knowledge"); what was read in attachments opens it."""
        records = turns[-self._settings.history_turns :] if self._settings.history_turns else ()
        history = trim_history(_history(records), self._settings.history_tokens)
        question = inbound.text.strip() or phrase("attachment_question", language)
        earlier = [(r.question.strip(), r.model_text) for r in records if r.model_text]
        query = await standalone(
            question,
            earlier,
            self._llm if self._settings.rewrite_followups else None,
            seconds=self._settings.rewrite_timeout,
        )
        if search := search_text(attached.new):  # an error code in a screenshot is searched
            query = replace(query, texts=(*query.texts, search))
        passages = await self._retrieve(query, inbound)
        # the thread's attachments after the knowledge base's passages, cited as "attached: …"
        passages += attached.sources(f"{question}\n{search}", self._settings.passage_chars)
        timings = Timings(retrieval=time.monotonic() - started)
        web = await self._look_up(inbound, question, passages, language)
        sources = web.sources if web is not None else ()
        if not passages and not sources:
            answer = Answer(
                text=phrase("no_knowledge", language),
                outcome=Outcome.NO_KNOWLEDGE,
                language=language,
                timings=replace(timings, total=time.monotonic() - started),
            )
        elif self._llm is None or self._llm.breaker_open:
            answer = self._retrieval_only(passages, language, timings, started, web=sources)
        else:
            answer = await self._generate(
                question, passages, history, language, reply, timings, started, web=sources
            )
        if opening := attached.opening(language):
            answer = replace(answer, text=f"{opening}\n\n{answer.text}")
        return answers.with_web_notice(answer, web)

    async def _escalated(
        self,
        thread: ThreadRecord,
        inbound: Inbound,
        answer: Answer,
        trigger: str,
        escalation: EscalationSettings,
        language: str,
        reply: ReplyChannel,
    ) -> Answer:
        """Hand the thread to a person after this answer; the answer says so at its end."""
        follow = await self._lifecycle.hand_off(
            thread.id,
            inbound.thread_key,
            reply,
            trigger,
            escalation,
            language,
            question=inbound.text.strip(),
            citations=answer.citations,
        )
        return replace(answer, text=f"{answer.text}\n\n{follow}", notice=follow)

    async def _addressed(self, inbound: Inbound) -> bool:
        """Whether the message is for the bot: a mention, a direct message, or a follow-up in a
        thread the bot already took part in (the store knows, whichever replica answered) where
        follow-ups are on (`[policy] follow_ups`, `followups_off`). Where the platform has no
        threads, a group message without a mention is for someone else."""
        if inbound.mentioned or inbound.chat_type is ChatType.DIRECT:
            return True
        if not inbound.threaded or not self._policy.follows_up(inbound):
            return False
        return await self._store.find_thread(inbound.thread_key) is not None

    def _policy_trigger(
        self,
        thread: ThreadRecord,
        history: Sequence[TurnRecord],
        answer: Answer,
        escalation: EscalationSettings,
    ) -> str | None:
        """Which escalation trigger (if any) this answer sets off in this channel; `history`: the
        thread's turns before this one, oldest first."""
        if answer.outcome is Outcome.NO_KNOWLEDGE and escalation.on_no_grounding:
            return NO_GROUNDING
        failed = answer.outcome in _MODEL_FAILED and self._llm is not None
        if failed and escalation.on_model_failure:
            return MODEL_FAILURE
        if escalation.max_unresolved_turns:
            recent = history[-escalation.max_unresolved_turns :]
            since_open = [
                r
                for r in recent
                if r.created_at >= thread.state_changed_at and r.outcome is not Outcome.COMMAND
            ]
            if len(since_open) + 1 >= escalation.max_unresolved_turns:
                return UNRESOLVED_TURNS
        return None

    # -- thread lifecycle (engine/lifecycle.py) ------------------------------------------------

    async def escalate(
        self, key: ThreadKey, reply: ReplyChannel, *, trigger: str, requested_by: str = ""
    ) -> None:
        """Hand the thread to a person (a "Talk to a person" button, negative feedback);
        NothingAsked where nobody asked anything."""
        await self._lifecycle.escalate(key, reply, trigger=trigger, requested_by=requested_by)

    async def human_replied(self, key: ThreadKey, agent_id: str, text: str = "") -> bool:
        """An agent wrote in the thread; True when this took an escalated thread over."""
        return await self._lifecycle.human_replied(key, agent_id, text)

    async def take(self, thread_id: int, agent: str) -> ThreadRecord:
        """A person takes the thread (console "take", or their message in it)."""
        return await self._lifecycle.take(thread_id, agent)

    async def resolve(
        self, thread_id: int, *, by: str, now: datetime | None = None
    ) -> ThreadRecord | None:
        """Mark the thread resolved (console, idle timeout); None when it already was."""
        return await self._lifecycle.resolve(thread_id, by=by, now=now)

    async def feedback(
        self,
        turn_id: int,
        user_id: str,
        value: str,
        comment: str = "",
        reply: ReplyChannel | None = None,
        *,
        chat: tuple[str, str, str] | None = None,
    ) -> None:
        """A helpful ("up") / not helpful ("down") click; "down" may escalate (see lifecycle)."""
        await self._lifecycle.feedback(turn_id, user_id, value, comment, reply, chat=chat)

    def _reject(self, inbound: Inbound, language: str) -> str | None:
        text = inbound.text.strip()
        if not text and not inbound.attachments:
            return phrase("empty", language)
        if len(text) > self._settings.max_message_chars:
            return phrase(
                "too_long", language, size=len(text), limit=self._settings.max_message_chars
            )
        return None

    async def _retrieve(self, query: Query, inbound: Inbound) -> list[Passage]:
        """Grounding passages for the (standalone) query; several texts merge by best score."""
        floor = self._retriever.min_score
        # Only the knowledge collections this chat is mapped to (knowledge.chat_collections).
        scope = self._retriever.collections_for(inbound.platform, inbound.chat_id)
        # Of those, only documents this asker (in a group: the whole chat) may open.
        reader = reader_of(inbound)
        if query.how != "bare":
            metrics.FOLLOWUP_QUERIES.labels(query.how).inc()
        with metrics.RETRIEVAL_TIME.time():
            found = [
                await self._retriever.retrieve(t, collections=scope, reader=reader)
                for t in query.texts
            ]
            passages = merge(found, floor, self._retriever.top_k)
        if not passages:
            metrics.NO_GROUNDING.inc()
        return passages

    async def _look_up(
        self, inbound: Inbound, question: str, passages: Sequence[Passage], language: str
    ) -> WebReport | None:
        """The web lookup for this message when the chat's mode and the message call for one."""
        if self._web is None:
            return None
        report = await self._web.consider(
            platform=inbound.platform,
            chat_id=inbound.chat_id,
            question=question,
            grounded=bool(passages),
            language=language,
        )
        if report is not None and not report.off:
            log.info(
                "web lookup (%s) for %r: %d sources, %d refused, %.2fs%s%s",
                report.reason, report.query, len(report.sources), len(report.refused),
                report.seconds, " (cached)" if report.cached else "",
                " — unavailable: " + report.error if report.unavailable else "",
            )  # fmt: skip
        return report

    async def _generate(
        self,
        question: str,
        passages: list[Passage],
        history: Sequence[HistoryTurn],
        language: str,
        reply: ReplyChannel,
        timings: Timings,
        started: float,
        *,
        web: Sequence[WebSource] = (),
    ) -> Answer:
        """The model's answer, fitted to its context and streamed; each way it can end has its
        own outcome, notice and metric (docs/model-server.md lists them)."""
        assert self._llm is not None
        await self._llm.server_info()
        budget = self._llm.budget()
        for attempt in (1, 2):
            try:
                fitted = await self._fit(question, passages, history, web, language, budget)
            except QuestionTooLong as error:
                return self._too_long(error.tokens, error.limit, language, timings, started)
            try:
                return await self._stream(
                    fitted, question, language, reply, timings, started, budget
                )
            except LLMContextExceeded as error:
                # the server counts differently than we did: fit again to what it said
                log.warning("model refused the prompt as too long (attempt %d): %s", attempt, error)
                smaller = self._llm.budget()
                if smaller.context >= budget.context:
                    smaller = Budget(budget.context * 3 // 4, budget.completion * 3 // 4)
                budget = smaller
        return self._too_long(fitted.prompt_tokens, budget.prompt, language, timings, started)

    async def _fit(
        self,
        question: str,
        passages: list[Passage],
        history: Sequence[HistoryTurn],
        web: Sequence[WebSource],
        language: str,
        budget: Budget,
    ) -> Fitted:
        assert self._llm is not None
        fitted = await fit(
            question,
            passages,
            history,
            web,
            budget=budget,
            counter=self._llm.counter,
            language=language,
            instructions_as=self._instructions_as,
            passage_chars=self._settings.passage_chars,
        )
        if fitted.dropped_turns:
            metrics.PROMPT_TRIMMED.labels("history").inc(fitted.dropped_turns)
        if fitted.dropped_passages:
            metrics.PROMPT_TRIMMED.labels("passages").inc(fitted.dropped_passages)
        return fitted

    async def _stream(
        self,
        fitted: Fitted,
        question: str,
        language: str,
        reply: ReplyChannel,
        timings: Timings,
        started: float,
        budget: Budget,
    ) -> Answer:
        """The model's answer streamed through `reply` (engine/stream.py collects it)."""
        assert self._llm is not None
        room = budget.context - fitted.prompt_tokens - max(16, budget.context // 50)
        deltas = self._llm.stream_chat(
            fitted.messages, max_tokens=max(16, min(self._llm.settings.max_tokens, room))
        )
        total_timeout = self._llm.settings.total_timeout
        streamed = await stream.collect(
            deltas, reply, language=language, started=started, total_timeout=total_timeout
        )
        if streamed.outcome is None:
            return self._retrieval_only(
                fitted.passages, language, timings, started, streamed.usage, web=fitted.web
            )
        return answers.from_stream(
            streamed,
            fitted,
            question,
            language,
            _total(timings, started),
            passage_chars=self._settings.passage_chars,
        )

    async def _too_long_alone(self, question: str, language: str, started: float) -> Answer | None:
        """The over-long question's answer, when it cannot fit the model's context even alone:
        said before retrieval, whatever the knowledge base holds."""
        if self._llm is None or self._llm.breaker_open:
            return None
        await self._llm.server_info()
        budget = self._llm.budget()
        try:
            await self._fit(question, [], [], [], language, budget)
        except QuestionTooLong as error:
            return self._too_long(error.tokens, error.limit, language, Timings(), started)
        return None

    def _too_long(
        self, tokens: int, limit: int, language: str, timings: Timings, started: float
    ) -> Answer:
        """The question does not fit the model's context, even with the history left out."""
        metrics.MODEL_ENDINGS.labels("too_long").inc()
        log.warning("question too long for the model: %d prompt tokens, %d allowed", tokens, limit)
        return answers.too_long(tokens, limit, language, _total(timings, started))

    def _retrieval_only(
        self,
        passages: list[Passage],
        language: str,
        timings: Timings,
        started: float,
        usage: Usage | None = None,
        *,
        web: Sequence[WebSource] = (),
    ) -> Answer:
        return answers.retrieval_only(
            passages,
            language,
            _total(timings, started),
            usage or Usage(),
            web=web,
            model_configured=self._llm is not None,
        )

    async def _finish(
        self, thread_id: int, inbound: Inbound, answer: Answer, reply: ReplyChannel
    ) -> Answer:
        """Store the turn first (its id goes on the feedback buttons), then show the answer."""
        # what the model wrote may hold NULs or broken surrogates too: not for a platform or a DB
        answer = replace(answer, text=clean.text(answer.text, len(answer.text) + 1))
        if not await still_ours(self._store.replicas, inbound.platform, inbound.message_id):
            return answer  # taken over by another replica, which told the asker (jobs/handover)
        try:
            stored = await self._persist(thread_id, inbound, answer)
        except Exception:
            # the answer is written: the asker gets it (without buttons) even if it cannot be
            # stored; the error still ends in the log and the error metric
            log.exception("turn of %s/%s not stored", inbound.platform, inbound.message_id)
            metrics.ANSWER_ERRORS.labels(inbound.platform, "store").inc()
            await reply.finish(answer)
            metrics.record_answer(inbound.platform, answer)
            await ending.mark(self._store.mark_answered, inbound.platform, inbound.message_id)
            return answer
        await reply.finish(stored)
        metrics.record_answer(inbound.platform, stored)
        if stored.outcome is Outcome.ANSWERED:
            self._repeats.observe(inbound.text, stored.text)
        return stored

    async def _persist(self, thread_id: int, inbound: Inbound, answer: Answer) -> Answer:
        # add_turn also marks the event answered, in the same transaction
        turn_id = await self._store.add_turn(thread_id, inbound, answer)
        return replace(answer, turn_id=turn_id)
