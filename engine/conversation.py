"""The conversation core: one inbound message in, one answer out through a ReplyChannel."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlsplit

from engine import clean, ending, metrics
from engine.budget import Budget, Fitted, QuestionTooLong, fit
from engine.config import ConversationSettings, PolicySettings
from engine.escalation import (
    ASKED_FOR_HUMAN,
    MODEL_FAILURE,
    NEGATIVE_FEEDBACK,
    NO_GROUNDING,
    UNRESOLVED_TURNS,
    EscalationSettings,
    asks_for_human,
    follow_up,
    resolves,
)
from engine.followup import Query, merge, standalone
from engine.language import detect, phrase
from engine.llm import (
    LLMClient,
    LLMContextExceeded,
    LLMEmptyAnswer,
    LLMError,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
)
from engine.messages import (
    Answer,
    Citation,
    EscalationNotice,
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
    first_web_number,
    heading,
    numbering,
    render_turn,
    section,
    trim_history,
)
from engine.store import ConversationStore, ThreadRecord, TurnRecord
from engine.tables import ThreadState
from engine.text import clip
from engine.trace import new_request_id
from engine.web import WebLookup, WebReport, WebSource
from knowledge import Passage, Retriever

log = logging.getLogger(__name__)

_CITE = re.compile(r"\[(\d{1,2})\]")
# Outcomes where the model server let the asker down: they may hand the thread to a person.
_MODEL_FAILED = (Outcome.RETRIEVAL_ONLY, Outcome.FAILED, Outcome.INTERRUPTED, Outcome.TIMED_OUT)


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
    ) -> None:
        self._settings = settings
        self._web = web
        self._store = store
        self._retriever = retriever
        self._llm = llm
        self._instructions_as = "system" if instructions_as == "system" else "user"
        self._policy = policy or Policy(PolicySettings())
        self._repeats = metrics.RepeatWatch()
        self._escalation = escalation or EscalationSettings()

    async def handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        """Answer `inbound` through `reply`; None when it was already handled (a redelivery) or
        is not for this bot (a chat or workspace outside the allowlists). Whatever fails inside,
        the asker gets a final message (engine/ending.py)."""
        return await ending.settle(self._handle, inbound, reply, self._store.mark_answered)

    async def _handle(self, inbound: Inbound, reply: ReplyChannel) -> Answer | None:
        started = time.monotonic()
        new_request_id(inbound.platform, inbound.message_id)
        metrics.RECEIVED.labels(inbound.platform).inc()
        if not self._policy.allowed(inbound):
            metrics.IGNORED.labels(inbound.platform, "not_allowed").inc()
            log.info(
                "message in %s:%s ignored: not on the allowlist", inbound.platform, inbound.chat_id
            )
            return None
        escalation = self._escalation.for_chat(inbound.platform, inbound.chat_id)
        # dedupe, thread and its last turns in one transaction: the answer needs the history
        # turns, the unresolved-turns trigger as many as it counts
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
            return None
        language = detect(inbound.text)
        thread = claim.thread
        if resolves(inbound.text):
            await self._store.set_state(
                thread.id, ThreadState.RESOLVED, taken_by=thread.taken_by, by="asker"
            )
            await self._observe_resolution(thread.id)
            answer = Answer(phrase("resolved", language), Outcome.COMMAND, language=language)
            return await self._finish(thread.id, inbound, answer, reply)
        if thread.state in (ThreadState.ESCALATED, ThreadState.HUMAN):
            # A person owns this thread: record the message, say nothing.
            answer = Answer(text="", outcome=Outcome.HANDED_OFF, language=language)
            return await self._persist(thread.id, inbound, answer)
        if thread.state == ThreadState.RESOLVED:
            thread = await self._store.set_state(thread.id, ThreadState.OPEN)

        if escalation.on_request and asks_for_human(inbound.text):
            text = await self._escalate(
                thread.id, inbound.thread_key, reply, ASKED_FOR_HUMAN, escalation, language
            )
            answer = Answer(text=text, outcome=Outcome.HANDED_OFF, language=language)
            return await self._finish(thread.id, inbound, answer, reply)

        rejection = self._reject(inbound, language)
        if rejection is None and not await self._policy.within_limits(inbound):
            metrics.IGNORED.labels(inbound.platform, "rate_limited").inc()
            rejection = phrase("rate_limited", language)
        if rejection is not None:
            answer = Answer(text=rejection, outcome=Outcome.FAILED, language=language)
            return await self._finish(thread.id, inbound, answer, reply)

        await reply.open()
        records = (
            claim.history[-self._settings.history_turns :] if self._settings.history_turns else ()
        )
        history = trim_history(_history(records), self._settings.history_tokens)
        question = inbound.text.strip()
        if (too_long := await self._too_long_alone(question, language, started)) is not None:
            return await self._finish(thread.id, inbound, too_long, reply)
        earlier = [(r.question.strip(), r.model_text) for r in records if r.model_text]
        query = await standalone(
            question,
            earlier,
            self._llm if self._settings.rewrite_followups else None,
            seconds=self._settings.rewrite_timeout,
        )
        passages = await self._retrieve(query, inbound)
        retrieval_s = time.monotonic() - started
        timings = Timings(retrieval=retrieval_s)
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
        answer = _with_web_notice(answer, web)
        trigger = self._policy_trigger(thread, claim.history, answer, escalation)
        if trigger is not None:
            follow = await self._escalate(
                thread.id,
                inbound.thread_key,
                reply,
                trigger,
                escalation,
                language,
                question=question,
                citations=answer.citations,
            )
            answer = replace(answer, text=f"{answer.text}\n\n{follow}", notice=follow)
        return await self._finish(thread.id, inbound, answer, reply)

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

    async def escalate(
        self, key: ThreadKey, reply: ReplyChannel, *, trigger: str, requested_by: str = ""
    ) -> None:
        """Hand the thread to a person (a "Talk to a person" button, negative feedback)."""
        thread = await self._store.thread(key)
        escalation = self._escalation.for_chat(key.platform, key.chat_id)
        if thread.state in (ThreadState.ESCALATED, ThreadState.HUMAN):
            return
        if not escalation.enabled(trigger):
            return
        history = await self._store.history(thread.id, 1)
        language = history[-1].language if history else "en"
        text = await self._escalate(thread.id, key, reply, trigger, escalation, language)
        await reply.finish(Answer(text=text, outcome=Outcome.HANDED_OFF, language=language))
        log.info("thread %s escalated by %s (%s)", key, requested_by or "policy", trigger)

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
            handoff = await self._store.record_human_message(thread.id, agent_id, text, now=now)
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
        await self._observe_resolution(thread.id)
        return resolved

    async def _observe_resolution(self, thread_id: int) -> None:
        handoff = await self._store.handoff(thread_id)
        if handoff is not None and handoff.resolved_at is not None:
            seconds = (handoff.resolved_at - handoff.escalated_at).total_seconds()
            metrics.HANDOFF_RESOLUTION.labels(handoff.key.platform).observe(max(seconds, 0.0))

    async def _escalate(
        self,
        thread_id: int,
        key: ThreadKey,
        reply: ReplyChannel,
        trigger: str,
        escalation: EscalationSettings,
        language: str,
        *,
        question: str = "",
        citations: tuple[Citation, ...] = (),
    ) -> str:
        """Mark the thread escalated, notify the human channel; returns what to tell the asker."""
        records = await self._store.history(thread_id, self._settings.history_turns)
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
        return follow_up(datetime.now(UTC), escalation, language)

    async def feedback(
        self,
        turn_id: int,
        user_id: str,
        value: str,
        comment: str = "",
        reply: ReplyChannel | None = None,
    ) -> None:
        """Record a helpful ("up") / not helpful ("down") click (a user's later click replaces
        it); "down" escalates where the channel says so and the adapter gave a reply channel."""
        await self._store.add_feedback(turn_id, user_id, value, comment)
        if value != "down" or reply is None:
            return
        turn = await self._store.turn(turn_id)
        thread = await self._store.thread_by_id(turn.thread_id) if turn else None
        if thread is not None:
            await self.escalate(thread.key, reply, trigger=NEGATIVE_FEEDBACK, requested_by=user_id)

    def _reject(self, inbound: Inbound, language: str) -> str | None:
        text = inbound.text.strip()
        if not text and inbound.attachments:
            return phrase("text_only", language)
        if not text:
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
        if query.how != "bare":
            metrics.FOLLOWUP_QUERIES.labels(query.how).inc()
        with metrics.RETRIEVAL_TIME.time():
            found = [await self._retriever.retrieve(t, collections=scope) for t in query.texts]
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
        assert self._llm is not None
        passages, web = fitted.passages, fitted.web
        earlier = [turn.question for turn in fitted.history]
        chars = self._settings.passage_chars
        sent = render_turn(
            question, passages, language=language, passage_chars=chars, web=web, earlier=earlier
        )
        numbers, _ = numbering(passages, earlier, chars)
        first_web = first_web_number(numbers, earlier)
        room = budget.context - fitted.prompt_tokens - max(16, budget.context // 50)
        content: list[str] = []
        reasoning: list[str] = []
        usage = Usage()
        finish: str | None = None
        first_token: float | None = None
        first_visible: float | None = None
        last_update = 0.0
        shown = ""
        limit = reply.limits.max_chars

        def ended(outcome: Outcome, ending: str, notice: str = "") -> Answer:
            metrics.MODEL_ENDINGS.labels(ending).inc()
            text = "".join(content).strip()
            return Answer(
                text=f"{text}\n\n{notice}" if notice else text,
                outcome=outcome,
                language=language,
                reasoning="".join(reasoning).strip(),
                citations=_citations(text, passages, web, numbers, first_web),
                usage=usage,
                timings=replace(
                    timings,
                    first_token=first_token,
                    first_visible=first_visible,
                    total=time.monotonic() - started,
                ),
                notice=notice,
                prompt=sent,
                model_text=text,
            )

        try:
            stream = self._llm.stream_chat(
                fitted.messages, max_tokens=max(16, min(self._llm.settings.max_tokens, room))
            )
            async for delta in stream:
                now = time.monotonic()
                if first_token is None and (delta.content or delta.reasoning):
                    first_token = now - started
                reasoning.append(delta.reasoning)
                content.append(delta.content)
                if delta.usage is not None:
                    usage = delta.usage
                finish = delta.finish_reason or finish
                text = "".join(content).strip()
                interval_passed = now - last_update >= self._settings.update_interval
                if reply.limits.can_edit and text and text != shown and interval_passed:
                    await reply.update(clip(text, limit))
                    shown, last_update = text, time.monotonic()
                    if first_visible is None:
                        first_visible = last_update - started
        except LLMContextExceeded:
            raise
        except (LLMTimeout, LLMStreamBroken, LLMServerError) as error:
            metrics.MODEL_ERRORS.labels(type(error).__name__).inc()
            if not "".join(content).strip():
                log.warning("model failed before any answer text: %s", error)
                return self._retrieval_only(passages, language, timings, started, usage, web=web)
            log.warning("model stream ended early: %s", error)
            if isinstance(error, LLMServerError):
                full = error.context
                key = "server_full" if full else "server_error"
                return ended(Outcome.INTERRUPTED, key, phrase(key, language))
            if isinstance(error, LLMTimeout) and error.own_limit:
                seconds = self._llm.settings.total_timeout
                return ended(
                    Outcome.TIMED_OUT, "own_timeout", phrase("timed_out", language, seconds=seconds)
                )
            return ended(Outcome.FAILED, "stalled", phrase("cut_off", language))
        except (LLMEmptyAnswer, LLMError) as error:
            metrics.MODEL_ERRORS.labels(type(error).__name__).inc()
            log.warning("model unavailable, answering from retrieval only: %s", error)
            return self._retrieval_only(passages, language, timings, started, usage, web=web)
        if finish == "length":
            log.warning(
                "answer hit the length limit (%d completion tokens, %d prompt tokens)",
                usage.completion_tokens, usage.prompt_tokens,
            )  # fmt: skip
            return ended(Outcome.TRUNCATED, "length", phrase("truncated", language))
        return ended(Outcome.ANSWERED, "stop")

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
        notice = phrase("too_long_for_model", language, tokens=tokens, limit=max(limit, 0))
        return Answer(
            text=notice,
            outcome=Outcome.TOO_LONG,
            language=language,
            timings=replace(timings, total=time.monotonic() - started),
            notice=notice,
        )

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
        # no model configured is a setting, not an outage: say so plainly
        notice = phrase("retrieval_only" if self._llm is not None else "model_off", language)
        excerpts = []
        for number, passage in enumerate(passages, start=1):
            excerpt = clip(re.sub(r"\n\s*\n+", "\n", passage.text.strip()), 500)
            excerpts.append(f"[{number}] {heading(passage)}\n{excerpt}")
        for number, source in enumerate(web, start=len(passages) + 1):
            excerpt = clip(re.sub(r"\n\s*\n+", "\n", source.text.strip()), 500)
            excerpts.append(f"[{number}] {source.title} — {source.url} (web)\n{excerpt}")
        return Answer(
            text=notice + "\n\n" + "\n\n".join(excerpts),
            outcome=Outcome.RETRIEVAL_ONLY,
            language=language,
            citations=_all_citations(passages, web),
            usage=usage or Usage(),
            timings=replace(timings, total=time.monotonic() - started),
            notice=notice,
        )

    async def _finish(
        self, thread_id: int, inbound: Inbound, answer: Answer, reply: ReplyChannel
    ) -> Answer:
        """Store the turn first (its id goes on the feedback buttons), then show the answer."""
        # what the model wrote may hold NULs or broken surrogates too: not for a platform or a DB
        answer = replace(answer, text=clean.text(answer.text, len(answer.text) + 1))
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


def _citation(number: int, passage: Passage) -> Citation:
    return Citation(
        number=number,
        title=passage.title,
        source=passage.source,
        location=passage.location,
        section=section(passage),
    )


def _web_citation(number: int, source: WebSource) -> Citation:
    return Citation(
        number=number,
        title=source.title,
        source=urlsplit(source.url).hostname or source.url,
        location=source.url,
        kind="web",
        fetched_at=source.fetched_at,
    )


def _citations(
    text: str,
    passages: Sequence[Passage],
    web: Sequence[WebSource] = (),
    numbers: Sequence[int] = (),
    first_web: int | None = None,
) -> tuple[Citation, ...]:
    """The sources the answer cites by number, and only those: an answer that cites nothing
    lists nothing. `numbers`: the passages' numbers in the prompt (default 1, 2, …); web
    results are numbered from `first_web` (default: after the passages)."""
    numbers = list(numbers) or list(range(1, len(passages) + 1))
    first = first_web or max(numbers, default=0) + 1
    sources = {n: _citation(n, p) for n, p in zip(numbers, passages, strict=True)}
    sources |= {first + i: _web_citation(first + i, w) for i, w in enumerate(web)}
    cited = sorted({int(n) for n in _CITE.findall(text)} & sources.keys())
    return tuple(sources[n] for n in cited)


def _all_citations(
    passages: Sequence[Passage], web: Sequence[WebSource] = ()
) -> tuple[Citation, ...]:
    """Every source, numbered as shown (a retrieval-only answer quotes them all)."""
    shown = "".join(f"[{n}]" for n in range(1, len(passages) + len(web) + 1))
    return _citations(shown, passages, web)


def _with_web_notice(answer: Answer, web: WebReport | None) -> Answer:
    """Say in the answer when the web was asked for but could not be used."""
    if web is None:
        return answer
    if web.off:
        key = "web_off"
    elif web.unavailable:
        key = "web_unavailable"
    elif web.refused and not web.sources:
        key = "web_refused"
    else:
        return answer
    notice = phrase(key, answer.language)
    return replace(
        answer,
        text=f"{answer.text}\n\n{notice}",
        notice=f"{answer.notice}\n{notice}".strip(),
    )
