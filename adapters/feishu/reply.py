"""One answer in one Feishu thread: a card that grows, a final card, or one plain fallback."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from adapters.feishu.client import FeishuApi, FeishuApiError
from adapters.feishu.convert import (
    ANSWER_ELEMENT,
    CARD_MAX_CHARS,
    TEXT_MAX_CHARS,
    ReplyTarget,
    chat_link,
    escalation_card,
    final_card,
    partial_card,
    partial_markdown,
    plain_text,
    request_uuid,
    streaming_card,
)
from adapters.streaming import Coalescer, ReplyTimings
from engine.catalog import phrase
from engine.messages import Answer, EscalationNotice
from engine.ports import ChannelLimits
from engine.text import clip, split_text

log = logging.getLogger(__name__)


@dataclass
class ReplyOptions:
    """What every reply channel of one adapter shares."""

    update_interval: float
    use_cardkit: bool
    domain: str
    escalation_chat_id: str = ""
    agents: list[str] = field(default_factory=list)


class FeishuReplyChannel:
    """ReplyChannel for Feishu: CardKit streaming (or message patch) at most once per interval.

    update() never waits for the network (adapters/streaming.py): a slow Open API does not slow
    the model stream.
    """

    def __init__(
        self,
        api: FeishuApi,
        target: ReplyTarget,
        options: ReplyOptions,
        language: str = "en",
        scope: str = "",
    ) -> None:
        self._api = api
        self._scope = scope or target.message_id  # idempotency keys derive from it
        self._target = target
        self._options = options
        self._language = language
        self._message_id: str | None = None  # the card message
        self._card_id: str | None = None  # CardKit entity (streaming mode)
        self._sequence = 0
        self._broken = False
        self._lock = asyncio.Lock()  # one Open API call at a time, in order
        self.timings = ReplyTimings()
        self._edits = Coalescer(self._push, options.update_interval, timings=self.timings)

    @property
    def limits(self) -> ChannelLimits:
        return ChannelLimits(max_chars=CARD_MAX_CHARS, can_edit=True)

    async def open(self, language: str = "en") -> None:
        self._language = language
        placeholder = phrase("thinking", self._language)
        try:
            async with self._lock:
                if self._options.use_cardkit:
                    card_id = await self._api.create_card(
                        streaming_card(placeholder, streaming=True)
                    )
                    content: dict[str, object] = {"type": "card", "data": {"card_id": card_id}}
                    self._card_id = card_id
                else:
                    content = partial_card(placeholder)
                self._message_id = await self._api.reply(
                    self._target.message_id,
                    "interactive",
                    content,
                    in_thread=self._target.in_thread,
                    uuid=request_uuid("open", self._scope),
                )
                # the first text may follow at once: two calls stay within the per-card limits
                self.timings.placeholder_shown()
        except FeishuApiError as error:
            self._broken = True
            log.warning("feishu: card for %s not sent: %s", self._target.message_id, error)

    async def update(self, text: str) -> None:
        if not self._broken and self._message_id is not None:
            self._edits.push(text)

    async def _push(self, text: str) -> bool:
        try:
            async with self._lock:
                await self._show_partial(text)
        except FeishuApiError as error:
            log.warning("feishu: card update failed, the answer will be sent plain: %s", error)
            return False
        return True

    async def _show_partial(self, text: str) -> None:
        assert self._message_id is not None
        if self._card_id is not None:
            self._sequence += 1
            uuid = request_uuid("txt", self._card_id, self._sequence)
            shown = partial_markdown(text)
            await self._api.stream_text(self._card_id, ANSWER_ELEMENT, shown, self._sequence, uuid)
        else:
            await self._api.patch_card(self._message_id, partial_card(text))

    async def finish(self, answer: Answer) -> None:
        await self._edits.close()
        self._broken = self._broken or self._edits.broken
        pieces = split_text(answer.text or "…", CARD_MAX_CHARS)
        card = final_card(answer, pieces[0], self._target)
        async with self._lock:
            try:
                if self._broken:
                    raise FeishuApiError("earlier update", None, "the card is not usable")
                await self._show_final(card)
            except FeishuApiError as error:
                if not self._broken:
                    log.warning("feishu: final card failed, sending the answer plain: %s", error)
                await self._send_plain(answer)
                return
            for number, piece in enumerate(pieces[1:], start=2):
                await self._reply_text({"text": piece}, f"more{number}")

    async def _show_final(self, card: dict[str, object]) -> None:
        if self._message_id is None:  # nothing opened (a refusal, an escalation): one card
            self._message_id = await self._api.reply(
                self._target.message_id,
                "interactive",
                card,
                in_thread=self._target.in_thread,
                uuid=request_uuid("final", self._scope),
            )
        elif self._card_id is not None:
            self._sequence += 1
            uuid = request_uuid("stop", self._card_id, self._sequence)
            await self._api.card_settings(
                self._card_id, {"config": {"streaming_mode": False}}, self._sequence, uuid
            )
            self._sequence += 1
            uuid = request_uuid("final", self._card_id, self._sequence)
            await self._api.update_card(self._card_id, card, self._sequence, uuid)
        else:
            await self._api.patch_card(self._message_id, card)
        self.timings.text_shown()

    async def _send_plain(self, answer: Answer) -> None:
        text = plain_text(answer, answer.text or "…")["text"]
        for number, piece in enumerate(split_text(text, TEXT_MAX_CHARS), start=1):
            await self._reply_text({"text": piece}, f"plain{number}")

    async def _reply_text(self, content: dict[str, str], kind: str) -> None:
        try:
            await self._api.reply(
                self._target.message_id,
                "text",
                content,
                in_thread=self._target.in_thread,
                uuid=request_uuid(kind, self._scope),
            )
        except FeishuApiError as error:
            log.error("feishu: could not answer %s at all: %s", self._target.message_id, error)

    async def post_escalation(self, notice: EscalationNotice) -> None:
        chat = self._options.escalation_chat_id
        if not chat:
            log.warning(
                "feishu: escalation of %s (%s) not posted: set [feishu] escalation_chat_id",
                notice.thread,
                notice.trigger,
            )
            return
        link = notice.link or chat_link(self._options.domain, notice.thread.chat_id)
        card = escalation_card(notice, link, self._options.agents)
        try:
            await self._api.send(
                chat,
                "interactive",
                card,
                uuid=request_uuid("esc", notice.thread, clip(notice.question, 200)),
            )
        except FeishuApiError as error:
            log.error("feishu: escalation card for %s not sent: %s", notice.thread, error)
