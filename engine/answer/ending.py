"""An answer always ends: whatever goes wrong inside the core, the asker gets a final message
(the answer, a polite failure in their language, or a handoff), and the turn is counted.

`settle` wraps the core's handling of one message. It watches the reply channel: when the core
raised before the asker saw a final message, it finishes the reply with an apology and marks the
event answered, so the recovery sweeper (jobs/recovery.py) does not apologise a second time. When
even the apology cannot be sent, the event stays unanswered and the sweeper tries later.
A cancelled answer (shutdown past its grace period) is finished the same way, so a half-written
card is never the last word.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from engine import catalog, metrics
from engine.messages import Answer, EscalationNotice, Inbound, Outcome
from engine.ports import ChannelLimits, ReplyChannel
from engine.text import detect

log = logging.getLogger(__name__)

FINISH_TIMEOUT = 10.0  # seconds the apology may take; then the sweeper has it

# (platform, message id) of the answers this process is working on: the sweeper leaves them be,
# however long they take (another replica's answers are protected by the sweeper's deadline)
IN_FLIGHT: set[tuple[str, str]] = set()

Handler = Callable[[Inbound, ReplyChannel], Awaitable[Answer | None]]
MarkAnswered = Callable[[str, str], Awaitable[bool]]


def phrase(key: str, language: str) -> str:
    """The polite failure `key` ("failed" | "stopping") in the asker's language."""
    return catalog.phrase(f"apology_{key}", language)


class Watched:
    """A reply channel that remembers whether the asker has seen the final message."""

    def __init__(self, reply: ReplyChannel) -> None:
        self._reply = reply
        self.finished = False

    @property
    def limits(self) -> ChannelLimits:
        return self._reply.limits

    async def open(self, language: str = "en") -> None:
        await self._reply.open(language)

    async def update(self, text: str) -> None:
        await self._reply.update(text)

    async def finish(self, answer: Answer) -> None:
        await self._reply.finish(answer)
        self.finished = True

    async def post_escalation(self, notice: EscalationNotice) -> None:
        await self._reply.post_escalation(notice)


async def settle(
    handle: Handler, inbound: Inbound, reply: ReplyChannel, mark_answered: MarkAnswered
) -> Answer | None:
    """`handle(inbound, reply)`, with a final message to the asker whatever happens inside."""
    watched = Watched(reply)
    key = (inbound.platform, inbound.message_id)
    IN_FLIGHT.add(key)
    try:
        return await handle(inbound, watched)
    except asyncio.CancelledError:
        if not watched.finished:
            log.warning(
                "answer to %s/%s cut short by shutdown", inbound.platform, inbound.message_id
            )
            # shielded: the task is being cancelled, the apology must still go out
            await asyncio.shield(_apologise(inbound, watched, "stopping", mark_answered))
        raise
    except Exception as error:
        metrics.ANSWER_ERRORS.labels(inbound.platform, type(error).__name__).inc()
        log.exception("answering %s/%s failed", inbound.platform, inbound.message_id)
        if watched.finished:
            return None  # the asker has the answer; only the bookkeeping after it failed
        return await _apologise(inbound, watched, "failed", mark_answered)
    finally:
        IN_FLIGHT.discard(key)


async def _apologise(
    inbound: Inbound, reply: Watched, key: str, mark_answered: MarkAnswered
) -> Answer | None:
    """Finish the reply with the polite failure; mark the event so nobody apologises again."""
    language = inbound.language_hint or detect(inbound.text)
    answer = Answer(text=phrase(key, language), outcome=Outcome.FAILED, language=language)
    try:
        async with asyncio.timeout(FINISH_TIMEOUT):
            await reply.finish(answer)
    except Exception:  # the platform is unreachable too: the sweeper tries again later
        log.exception(
            "could not tell %s/%s about the failure", inbound.platform, inbound.message_id
        )
        return None
    metrics.record_answer(inbound.platform, answer)
    await mark(mark_answered, inbound.platform, inbound.message_id)
    return answer


async def mark(mark_answered: MarkAnswered, platform: str, message_id: str) -> None:
    """Mark an event answered after the asker was told, retrying a database that just dropped a
    connection (the pool reconnects); only if it stays down may the sweeper apologise again.
    The sweeper waits for the answer deadline (minutes), so retrying for ~15 s costs nothing:
    under a burst of dropped connections three quick tries were seen to run out (CI)."""
    for pause in (0.2, 0.5, 1.0, 2.0, 4.0, 8.0, None):
        try:
            await mark_answered(platform, message_id)
            return
        except Exception as error:
            if pause is None:
                log.warning("could not mark %s/%s answered: %s", platform, message_id, error)
                return
            await asyncio.sleep(pause)
