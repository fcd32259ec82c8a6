"""The ReplyChannel for one DingTalk message: AI card streaming, or a notice and markdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Protocol

from adapters.dingtalk.client import DingTalkApiError, OpenApi
from adapters.dingtalk.config import DingTalkSettings
from adapters.dingtalk.convert import ReplyTarget, answer_markdown, partial_markdown
from adapters.streaming import Coalescer, ReplyTimings
from engine.catalog import phrase
from engine.messages import Answer, EscalationNotice
from engine.ports import ChannelLimits
from engine.text import clip, split_text

log = logging.getLogger(__name__)

# AI card flowStatus values (dingtalk_stream.AICardStatus); cardParamMap values are strings.
PROCESSING, INPUTTING, FINISHED, FAILED = "1", "2", "3", "5"


class Outbox(Protocol):
    """What a reply channel needs from the adapter."""

    api: OpenApi

    async def send_markdown(self, target: ReplyTarget, text: str) -> None: ...

    async def post_escalation(self, notice: EscalationNotice, target: ReplyTarget) -> None: ...

    def remember_card(self, out_track_id: str, turn_id: int, target: ReplyTarget) -> None: ...


class DingTalkReplyChannel:
    """With a card template: one AI card streamed and finalised; without: a late notice, then
    the final markdown. Any card failure ends in one markdown message with the whole answer."""

    def __init__(
        self,
        settings: DingTalkSettings,
        outbox: Outbox,
        target: ReplyTarget,
        language: str = "en",
    ) -> None:
        self._settings = settings
        self._outbox = outbox
        self._target = target
        self._language = language
        self._cards = bool(settings.card_template_id)
        self._limits = ChannelLimits(max_chars=settings.max_chars, can_edit=self._cards)
        self._card_id = ""
        self._card: asyncio.Task[bool] | None = None
        self._card_ok = False
        self._created = False
        self._inputting = False
        self._notice: asyncio.Task[None] | None = None
        self.timings = ReplyTimings()
        self._edits = Coalescer(self._stream, settings.update_interval, timings=self.timings)

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    async def open(self, language: str = "en") -> None:
        self._language = language
        # Both run beside retrieval: the core does not wait for DingTalk here.
        if self._cards:
            self._card = asyncio.create_task(self._create_card())
        elif self._settings.thinking_notice_after >= 0:
            self._notice = asyncio.create_task(self._notice_later())

    async def update(self, text: str) -> None:
        if self._card is not None:
            self._edits.push(text)

    async def _stream(self, text: str) -> bool:
        """One streamed text into the AI card; False: the card is given up for markdown."""
        if self._card is None or not await self._card or not self._card_ok:
            return False
        try:
            if not self._inputting:
                await self._outbox.api.update_card(self._card_id, {"flowStatus": INPUTTING})
                self._inputting = True
            key = self._settings.card_content_key
            await self._outbox.api.stream_card(
                self._card_id, key, clip(partial_markdown(text), self.limits.max_chars)
            )
        except (DingTalkApiError, OSError, ValueError) as error:
            log.warning("DingTalk card update failed, the answer will come as markdown: %s", error)
            self._card_ok = False
            return False
        return True

    async def finish(self, answer: Answer) -> None:
        await self._edits.close()
        await self._end_notice()
        if self._card is not None and await self._card and await self._finish_card(answer):
            return
        text = answer_markdown(answer, hint_human=True)  # no card buttons on this path
        if not text.strip():
            return
        for piece in split_text(text, self.limits.max_chars):
            await self._send(piece)

    async def post_escalation(self, notice: EscalationNotice) -> None:
        await self._outbox.post_escalation(notice, self._target)

    async def _send(self, text: str, *, notice: bool = False) -> None:
        await self._outbox.send_markdown(self._target, text)
        if notice:
            self.timings.placeholder_shown()
        else:
            self.timings.text_shown()

    async def _notice_later(self) -> None:
        await asyncio.sleep(self._settings.thinking_notice_after)
        try:
            await self._send(phrase("thinking_notice", self._language), notice=True)
        except Exception as error:  # a lost notice must not cost the answer
            log.warning("DingTalk thinking notice failed: %s", error)

    async def _end_notice(self) -> None:
        """Cancel a notice still waiting; one already being sent finishes first (order)."""
        notice, self._notice = self._notice, None
        if notice is None:
            return
        if not notice.done():
            notice.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await notice

    async def _create_card(self) -> bool:
        self._card_id = uuid.uuid4().hex
        target = self._target
        try:
            await self._outbox.api.create_card(
                template_id=self._settings.card_template_id,
                out_track_id=self._card_id,
                data={self._settings.card_content_key: "", "flowStatus": PROCESSING},
                group=target.group,
                conversation_id=target.conversation_id,
                staff_id=target.staff_id,
                nick=target.nick,
            )
        except (DingTalkApiError, OSError, ValueError) as error:
            log.warning("DingTalk AI card failed, answering with markdown: %s", error)
            return False
        self.timings.placeholder_shown()
        self._created = self._card_ok = True
        return True

    async def _finish_card(self, answer: Answer) -> bool:
        """Final text into the card and its finished state; False: fall back to markdown."""
        if not self._card_ok:
            await self._mark_failed()
            return False
        text = answer_markdown(answer, hint_human=False)
        pieces = split_text(text, self.limits.max_chars) if text.strip() else [""]
        key = self._settings.card_content_key
        data = {key: pieces[0], "flowStatus": FINISHED}
        if answer.turn_id is not None:
            data["turn_id"] = str(answer.turn_id)
        try:
            await self._outbox.api.stream_card(self._card_id, key, pieces[0], final=True)
            await self._outbox.api.update_card(self._card_id, data)
        except (DingTalkApiError, OSError, ValueError) as error:
            log.warning("DingTalk card finish failed, answering with markdown: %s", error)
            await self._mark_failed()
            return False
        if answer.turn_id is not None:
            self._outbox.remember_card(self._card_id, answer.turn_id, self._target)
        for piece in pieces[1:]:  # an answer longer than one card continues as messages
            await self._send(piece)
        return True

    async def _mark_failed(self) -> None:
        if not self._created:
            return
        with contextlib.suppress(DingTalkApiError, OSError, ValueError):
            await self._outbox.api.update_card(self._card_id, {"flowStatus": FAILED})
