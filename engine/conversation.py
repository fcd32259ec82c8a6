"""The conversation core: one inbound message in, one answer out through a ReplyChannel."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from engine import clean, metrics
from engine.answer import compose, ending, stream
from engine.answer.attachments import Attached, AttachmentReader, search_text
from engine.answer.budget import Fitted, QuestionTooLong, fit
from engine.answer.followup import Query, standalone
from engine.answer.prompt import (
    HistoryTurn,
    trim_history,
)
from engine.answer.turn import Grounds, Turn
from engine.catalog import phrase
from engine.config import AttachmentSettings, ConversationSettings, PolicySettings
from engine.llm import LLMClient, LLMContextExceeded
from engine.llm.probe import Budget
from engine.messages import (
    Answer,
    ChatType,
    Click,
    Inbound,
    Outcome,
    ThreadKey,
    Timings,
    Usage,
)
from engine.policy import Policy
from engine.ports import ReplyChannel, ReplyFor
from engine.store.conversations import Claim, ConversationStore, ThreadRecord, TurnRecord
from engine.store.replicas import TakenOver, fenced_out
from engine.store.tables import ThreadState
from engine.text import detect
from engine.threads.context import with_thread_context
from engine.threads.escalation import (
    ASKED_FOR_HUMAN,
    MODEL_FAILURE,
    NO_GROUNDING,
    UNRESOLVED_TURNS,
    EscalationSettings,
    asks_for_human,
    resolves,
)
from engine.threads.lifecycle import ThreadLifecycle
from engine.trace import new_request_id
from engine.weblookup import WebLookup, WebReport
from knowledge import Passage, Reader, Retriever

log = logging.getLogger(__name__)

# Outcomes where the model server let the asker down: they may hand the thread to a person.
_MODEL_FAILED = (Outcome.RETRIEVAL_ONLY, Outcome.FAILED, Outcome.INTERRUPTED, Outcome.TIMED_OUT)


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
        the asker gets a final message (engine/answer/ending.py)."""
        return await ending.settle(self._handle, inbound, reply, self._store.mark_answered)

    async def _handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """The design's steps: accept, claim, decide (language, context, thread state, a person
        asked for), limit, answer (history, retrieval, web, model), escalate, finish."""
        started = time.monotonic()
        new_request_id(inbound.platform, inbound.message_id)
        metrics.RECEIVED.labels(inbound.platform).inc()
        if not await self._accepts(inbound):
            return None
        if not inbound.threaded:  # no platform threads: the core keeps the asker's window
            inbound = await self._lifecycle.continued(inbound)
        escalation = self._lifecycle.escalation.for_chat(inbound.platform, inbound.chat_id)
        claim = await self._claim(inbound, escalation)
        if claim is None:
            return None
        language = inbound.language_hint or detect(inbound.text)
        inbound = with_thread_context(inbound, answered_before=bool(claim.history))
        turn = Turn(inbound, reply, claim.thread, claim.history, language, started, claim.new)
        if resolves(inbound.text):
            return await self._resolved_by_asker(turn)
        if turn.thread.state in (ThreadState.ESCALATED, ThreadState.HUMAN):
            # A person owns this thread: record the message, say nothing.
            return await self._persist(turn, turn.answer("", Outcome.HANDED_OFF))
        if turn.thread.state == ThreadState.RESOLVED:
            thread = await self._store.set_state(turn.thread.id, ThreadState.OPEN)
            turn = replace(turn, thread=thread)
        if escalation.on_request and asks_for_human(inbound.text):
            text = await self._lifecycle.hand_off(turn.thread, reply, ASKED_FOR_HUMAN, language)
            return await self._finish(turn, turn.answer(text, Outcome.HANDED_OFF))
        if (rejection := await self._rejection(inbound, language)) is not None:
            return await self._finish(turn, turn.answer(rejection, Outcome.FAILED))
        return await self._answered(turn, escalation)

    async def _answered(self, turn: Turn, escalation: EscalationSettings) -> Answer:
        """The answer proper: attachments read, the model (or the passages) asked, and the
        thread handed to a person when this answer sets off an escalation trigger."""
        await turn.reply.open(turn.language)
        attached = await self._attached(turn)
        inbound = turn.inbound
        if not inbound.text.strip() and not inbound.language_hint and attached.read_any:
            # an image alone: the language it shows
            turn = turn.speaking(detect(search_text(attached.new)))
        if not inbound.text.strip() and not attached.read_any:
            said = f"{attached.opening(turn.language)}\n\n{phrase('text_only', turn.language)}"
            return await self._finish(turn, turn.answer(said.strip(), Outcome.FAILED))
        if (too_long := await self._too_long_alone(turn)) is not None:
            return await self._finish(turn, too_long)
        answer = await self._answer(turn, attached)
        trigger = self._policy_trigger(turn, answer, escalation)
        if trigger is not None:
            answer = await self._escalated(turn, answer, trigger)
        return await self._finish(turn, answer)

    async def _accepts(self, inbound: Inbound) -> bool:
        """On the allowlists, not an agent's reply where people own the conversation (recorded
        there instead: engine/threads/lifecycle.py), and addressed to the bot."""
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
            chat_type=inbound.chat_type,
        )
        if claim is None:
            metrics.DEDUPLICATED.labels(inbound.platform).inc()
            log.info("duplicate message %s/%s dropped", inbound.platform, inbound.message_id)
        return claim

    async def _attached(self, turn: Turn) -> Attached:
        """Read this message's attachments and keep them with the thread; with the thread's
        earlier ones (engine/answer/attachments.py)."""
        inbound, thread_id = turn.inbound, turn.thread.id
        earlier = [] if turn.new_thread else await self._store.attachments.for_thread(thread_id)
        if not inbound.attachments:
            return Attached(earlier=tuple(earlier))
        reads = await self._reader.read_all(inbound.attachments, turn.language)
        stored = await self._store.attachments.add(thread_id, inbound.message_id, reads)
        for read in stored:
            outcome = "read" if read.text else "unread"
            metrics.ATTACHMENTS.labels(inbound.platform, read.kind, outcome).inc()
            if not read.text:
                log.info("attachment %r (%s) not read: %s", read.name, read.kind, read.error)
        return Attached(new=tuple(stored), earlier=tuple(earlier))

    async def _resolved_by_asker(self, turn: Turn) -> Answer | None:
        thread = turn.thread
        await self._store.set_state(
            thread.id, ThreadState.RESOLVED, taken_by=thread.taken_by, by="asker"
        )
        await self._lifecycle.observe_resolution(thread.id)
        return await self._finish(
            turn, turn.answer(phrase("resolved", turn.language), Outcome.COMMAND)
        )

    async def _rejection(self, inbound: Inbound, language: str) -> str | None:
        """Why the message is not answered (empty, too long, rate limited), or None."""
        text, limit = inbound.text.strip(), self._settings.max_message_chars
        if not text and not inbound.attachments:
            return phrase("empty", language)
        if len(text) > limit:
            return phrase("too_long", language, size=len(text), limit=limit)
        if not await self._policy.within_limits(inbound):
            metrics.IGNORED.labels(inbound.platform, "rate_limited").inc()
            return phrase("rate_limited", language)
        return None

    async def _answer(self, turn: Turn, attached: Attached) -> Answer:
        """History, the standalone query, retrieval, the web lookup, then the model's answer (or
        the passages alone, or "no knowledge"); what was read in attachments opens it."""
        settings, language = self._settings, turn.language
        records = turn.history[-settings.history_turns :] if settings.history_turns else ()
        history = trim_history(_history(records), settings.history_tokens)
        question = turn.question or phrase("attachment_question", language)
        earlier = [(r.question.strip(), r.model_text) for r in records if r.model_text]
        query = Query((question,), "bare")  # a thread's first question: nothing to lean on
        if earlier:
            rewriter = self._llm if settings.rewrite_followups else None
            query = await standalone(question, earlier, rewriter, seconds=settings.rewrite_timeout)
        search = search_text(attached.new) if attached.new else ""
        if search:  # an error code in a screenshot is searched
            query = replace(query, texts=(*query.texts, search))
        passages = await self._retrieve(query, turn.inbound)
        if attached.new or attached.earlier:
            # the thread's attachments after the knowledge base's passages, cited as "attached: …"
            passages += attached.sources(f"{question}\n{search}", settings.passage_chars)
        timings = Timings(retrieval=time.monotonic() - turn.started)
        web = None
        if self._web is not None:
            web = await self._look_up(self._web, turn, question, bool(passages))
        grounds = Grounds(question, passages, history, web.sources if web is not None else ())
        if not passages and not grounds.web:
            answer = replace(
                turn.answer(phrase("no_knowledge", language), Outcome.NO_KNOWLEDGE),
                timings=turn.timed(timings),
            )
        elif self._llm is None or self._llm.breaker_open:
            answer = self._retrieval_only(turn, grounds, timings)
        else:
            answer = await self._generate(turn, grounds, timings)
        if attached.new and (opening := attached.opening(language)):
            answer = replace(answer, text=f"{opening}\n\n{answer.text}")
        return compose.with_web_notice(answer, web) if web is not None else answer

    async def _escalated(self, turn: Turn, answer: Answer, trigger: str) -> Answer:
        """Hand the thread to a person after this answer; the answer says so at its end."""
        follow = await self._lifecycle.hand_off(
            turn.thread,
            turn.reply,
            trigger,
            turn.language,
            question=turn.question,
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
        self, turn: Turn, answer: Answer, escalation: EscalationSettings
    ) -> str | None:
        """Which escalation trigger (if any) this answer sets off in this channel."""
        thread, history = turn.thread, turn.history
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

    # -- thread lifecycle (engine/threads/lifecycle.py) ------------------------------------------------

    async def clicked(self, click: Click, reply: ReplyChannel | ReplyFor | None = None) -> None:
        """A button on an answer or a thread: feedback, or a person asked for (see lifecycle)."""
        await self._lifecycle.clicked(click, reply)

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

    async def _retrieve(self, query: Query, inbound: Inbound) -> list[Passage]:
        """Grounding passages for the (standalone) query: only the knowledge collections this
        chat is mapped to (knowledge.chat_collections), of those only documents this asker (in a
        group: the whole chat) may open; several texts merge by best score."""
        if query.how != "bare":
            metrics.FOLLOWUP_QUERIES.labels(query.how).inc()
        with metrics.RETRIEVAL_TIME.time():
            passages = await self._retriever.search(query.texts, reader_of(inbound))
        if not passages:
            metrics.NO_GROUNDING.inc()
        return passages

    async def _look_up(
        self, lookup: WebLookup, turn: Turn, question: str, grounded: bool
    ) -> WebReport | None:
        """The web lookup for this message when the chat's mode and the message call for one."""
        report = await lookup.consider(
            platform=turn.inbound.platform,
            chat_id=turn.inbound.chat_id,
            question=question,
            grounded=grounded,
            language=turn.language,
        )
        if report is not None and not report.off:
            log.info(
                "web lookup (%s) for %r: %d sources, %d refused, %.2fs%s%s",
                report.reason, report.query, len(report.sources), len(report.refused),
                report.seconds, " (cached)" if report.cached else "",
                " — unavailable: " + report.error if report.unavailable else "",
            )  # fmt: skip
        return report

    async def _generate(self, turn: Turn, grounds: Grounds, timings: Timings) -> Answer:
        """The model's answer, fitted to its context and streamed; each way it can end has its
        own outcome, notice and metric (docs/model-server.md lists them)."""
        assert self._llm is not None
        await self._llm.server_info()
        budget = self._llm.budget()
        for attempt in (1, 2):
            try:
                fitted = await self._fit(grounds, turn.language, budget)
            except QuestionTooLong as error:
                return self._too_long(turn, error.tokens, error.limit, timings)
            try:
                return await self._stream(turn, fitted, budget, timings)
            except LLMContextExceeded as error:
                # the server counts differently than we did: fit again to what it said
                log.warning("model refused the prompt as too long (attempt %d): %s", attempt, error)
                smaller = self._llm.budget()
                if smaller.context >= budget.context:
                    smaller = Budget(budget.context * 3 // 4, budget.completion * 3 // 4)
                budget = smaller
        return self._too_long(turn, fitted.prompt_tokens, budget.prompt, timings)

    async def _fit(self, grounds: Grounds, language: str, budget: Budget) -> Fitted:
        assert self._llm is not None
        fitted = await fit(
            grounds,
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

    async def _stream(self, turn: Turn, fitted: Fitted, budget: Budget, timings: Timings) -> Answer:
        """The model's answer streamed through the turn's reply (engine/answer/stream.py)."""
        assert self._llm is not None
        room = budget.context - fitted.prompt_tokens - max(16, budget.context // 50)
        deltas = self._llm.stream_chat(
            fitted.messages, max_tokens=max(16, min(self._llm.settings.max_tokens, room))
        )
        total_timeout = self._llm.settings.total_timeout
        streamed = await stream.collect(
            deltas,
            turn.reply,
            language=turn.language,
            started=turn.started,
            total_timeout=total_timeout,
        )
        if streamed.outcome is None:
            grounds = Grounds(turn.question, fitted.passages, web=fitted.web)
            return self._retrieval_only(turn, grounds, timings, streamed.usage)
        return compose.from_stream(
            streamed,
            fitted,
            turn.question,
            turn.language,
            turn.timed(timings),
            passage_chars=self._settings.passage_chars,
        )

    async def _too_long_alone(self, turn: Turn) -> Answer | None:
        """The over-long question's answer, when it cannot fit the model's context even alone:
        said before retrieval, whatever the knowledge base holds."""
        if self._llm is None or self._llm.breaker_open:
            return None
        await self._llm.server_info()
        try:
            await self._fit(Grounds(turn.question), turn.language, self._llm.budget())
        except QuestionTooLong as error:
            return self._too_long(turn, error.tokens, error.limit, Timings())
        return None

    def _too_long(self, turn: Turn, tokens: int, limit: int, timings: Timings) -> Answer:
        """The question does not fit the model's context, even with the history left out."""
        metrics.MODEL_ENDINGS.labels("too_long").inc()
        log.warning("question too long for the model: %d prompt tokens, %d allowed", tokens, limit)
        return compose.too_long(tokens, limit, turn.language, turn.timed(timings))

    def _retrieval_only(
        self, turn: Turn, grounds: Grounds, timings: Timings, usage: Usage | None = None
    ) -> Answer:
        return compose.retrieval_only(
            grounds.passages,
            turn.language,
            turn.timed(timings),
            usage or Usage(),
            web=grounds.web,
            model_configured=self._llm is not None,
        )

    async def _finish(self, turn: Turn, answer: Answer) -> Answer:
        """Store the turn first (its id goes on the feedback buttons), then show the answer."""
        inbound, reply = turn.inbound, turn.reply
        # what the model wrote may hold NULs or broken surrogates too: not for a platform or a DB
        answer = replace(answer, text=clean.text(answer.text, len(answer.text) + 1))
        try:  # stored only while the turn is still ours (the fence, in the same transaction)
            stored = await self._persist(turn, answer, fence=True)
        except TakenOver:
            fenced_out(inbound.platform, inbound.message_id)
            return answer  # taken over by another replica, which told the asker (jobs/handover)
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

    async def _persist(self, turn: Turn, answer: Answer, *, fence: bool = False) -> Answer:
        # add_turn also marks the event answered, in the same transaction
        turn_id = await self._store.add_turn(turn.thread.id, turn.inbound, answer, fence=fence)
        return replace(answer, turn_id=turn_id)
