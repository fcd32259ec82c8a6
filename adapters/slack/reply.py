"""SlackReplyChannel: one answer in one Slack thread, streamed by throttled edits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.config import SlackSettings
from adapters.slack.convert import (
    MESSAGE_CHARS,
    STREAM_CHARS,
    Where,
    answer_pieces,
    escalation_message,
    final_blocks,
    labels,
    markdown_to_mrkdwn,
    mention_text,
)
from engine.language import phrase
from engine.messages import Answer, EscalationNotice, ThreadKey
from engine.ports import ChannelLimits
from engine.text import clip, split_text

log = logging.getLogger(__name__)

# What a failed Slack call raises: an API error ({"ok": false}) or a transport problem.
SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, asyncio.TimeoutError)


class SlackReplyChannel:
    """Placeholder at once, edits at most every `update_interval`, Block Kit at the end.

    `update()` never waits for Slack: it keeps the latest text and a background flusher sends
    it when the interval allows, so a rate-limited edit (429, Retry-After) never stalls the model.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        place: Where,
        settings: SlackSettings,
        *,
        language: str = "en",
        user_id: str = "",
        source_ts: str = "",
        engaged: Callable[[ThreadKey], None] | None = None,
    ) -> None:
        self._client = client
        self._place = place
        self._settings = settings
        self._language = language
        self._user_id = user_id
        self._source_ts = source_ts  # the asker's message (permalink target for DM top level)
        self._engaged = engaged
        self._limits = ChannelLimits(max_chars=MESSAGE_CHARS, can_edit=True)
        self._native = settings.native_streaming and place.reply_ts is not None
        self._ts: str | None = None  # the message being edited or streamed
        self._streamed = ""  # text appended to a native stream so far
        self._shown = ""
        self._pending: str | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._editing = False
        self._last_edit = 0.0
        self._broken = False  # an edit failed: stop editing, the final goes as a new message
        # For the latency benchmark: monotonic times of the placeholder and the first text shown.
        self.created_at = time.monotonic()
        self.placeholder_at: float | None = None
        self.first_text_at: float | None = None
        self.edits = 0

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    @property
    def place(self) -> Where:
        return self._place

    async def open(self) -> None:
        self._mark_engaged()
        try:
            if self._native:
                response = await self._client.chat_startStream(
                    channel=self._place.channel,
                    thread_ts=self._place.reply_ts or "",
                    recipient_team_id=self._place.tenant or None,
                    recipient_user_id=self._user_id or None,
                )
            else:
                response = await self._client.chat_postMessage(
                    channel=self._place.channel,
                    thread_ts=self._place.reply_ts,
                    text=phrase("thinking", self._language),
                )
        except SLACK_ERRORS as error:
            log.warning("slack: could not post the placeholder in %s: %s", self._place.key, error)
            self._native = False
            return
        self._ts = str(response["ts"])
        # The placeholder is a new message, not an edit: the first text may follow at once.
        self.placeholder_at = time.monotonic()

    async def update(self, text: str) -> None:
        if self._ts is None or self._broken or not text.strip():
            return
        self._pending = text  # a newer text replaces one not yet sent
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        while self._pending is not None and not self._broken:
            wait = self._last_edit + self._settings.update_interval - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            text, self._pending = self._pending, None
            if text is None or text == self._shown:
                continue
            self._editing = True
            try:
                await self._show_partial(text)
            except SLACK_ERRORS as error:
                log.warning("slack: streaming edit failed in %s: %s", self._place.key, error)
                self._broken = True
                return
            finally:
                self._editing = False
                self._last_edit = time.monotonic()
            self._shown = text
            self.edits += 1
            if self.first_text_at is None:
                self.first_text_at = time.monotonic()

    async def _show_partial(self, text: str) -> None:
        assert self._ts is not None
        if self._native:
            if not text.startswith(self._streamed) or len(text) > STREAM_CHARS:
                return  # a stream only grows; the final message shows the rest
            delta = text[len(self._streamed) :]
            if delta:
                await self._client.chat_appendStream(
                    channel=self._place.channel, ts=self._ts, markdown_text=delta
                )
                self._streamed = text
            return
        await self._client.chat_update(
            channel=self._place.channel,
            ts=self._ts,
            text=clip(markdown_to_mrkdwn(text, partial=True), MESSAGE_CHARS),
        )

    async def _stop_flusher(self) -> None:
        self._pending = None
        flusher, self._flusher = self._flusher, None
        if flusher is None or flusher.done():
            return
        if self._editing:
            await asyncio.wait({flusher})  # let an edit on the wire land before the final one
        else:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher

    async def finish(self, answer: Answer) -> None:
        await self._stop_flusher()
        if not answer.text.strip():
            return
        self._mark_engaged()
        words = labels(answer.language)
        if self._native and self._ts is not None and not self._broken:
            if await self._finish_stream(answer, words):
                return
        pieces = answer_pieces(answer)
        try:
            for number, piece in enumerate(pieces):
                last = number == len(pieces) - 1
                blocks = final_blocks(piece, answer, self._place, last=last, labels=words)
                await self._post_or_edit(piece, blocks, edit=number == 0)
        except SLACK_ERRORS as error:
            log.warning(
                "slack: Block Kit answer failed in %s (%s); plain text", self._place.key, error
            )
            await self._post_plain(answer.text)

    async def _finish_stream(self, answer: Answer, words: Any) -> bool:
        """Close a native stream with the rest of the text and the sources and buttons."""
        assert self._ts is not None
        text = answer.text
        fits = text.startswith(self._streamed) and len(text) <= STREAM_CHARS
        tail = final_blocks("", answer, self._place, last=True, labels=words)[1:]
        try:
            await self._client.chat_stopStream(
                channel=self._place.channel,
                ts=self._ts,
                markdown_text=text[len(self._streamed) :] if fits else None,
                blocks=tail or None,
            )
        except SLACK_ERRORS as error:
            log.warning("slack: chat.stopStream failed in %s: %s", self._place.key, error)
            self._broken = True
            return False
        if not fits:
            self._ts, self._broken = None, True  # the full answer follows as new messages
            return False
        return True

    async def _post_or_edit(self, text: str, blocks: list[dict[str, Any]], *, edit: bool) -> None:
        fallback = clip(text, 3000)
        if edit and self._ts is not None and not self._broken and not self._native:
            try:
                await self._client.chat_update(
                    channel=self._place.channel, ts=self._ts, text=fallback, blocks=blocks
                )
                return
            except SlackApiError as error:
                log.warning(
                    "slack: final edit failed in %s (%s); posting anew", self._place.key, error
                )
        await self._client.chat_postMessage(
            channel=self._place.channel,
            thread_ts=self._place.reply_ts,
            text=fallback,
            blocks=blocks,
        )

    async def _post_plain(self, text: str) -> None:
        for piece in split_text(markdown_to_mrkdwn(text), MESSAGE_CHARS):
            try:
                await self._client.chat_postMessage(
                    channel=self._place.channel, thread_ts=self._place.reply_ts, text=piece
                )
            except SLACK_ERRORS:
                log.exception("slack: could not post the answer in %s", self._place.key)
                return

    async def post_escalation(self, notice: EscalationNotice) -> None:
        target = self._settings.escalation_channel
        if not target:
            log.warning(
                "slack: thread %s needs a person but [slack] escalation_channel is not set",
                notice.thread,
            )
            return
        permalink = ""
        try:
            response = await self._client.chat_getPermalink(
                channel=self._place.channel, message_ts=self._place.reply_ts or self._source_ts
            )
            permalink = str(response.get("permalink") or "")
        except SLACK_ERRORS as error:
            log.warning("slack: no permalink for %s: %s", notice.thread, error)
        text, blocks = escalation_message(
            notice, permalink=permalink, mention=mention_text(self._settings.escalation_mention)
        )
        try:
            await self._client.chat_postMessage(channel=target, text=text, blocks=blocks)
        except SLACK_ERRORS:
            log.exception("slack: could not post the escalation notice to %s", target)

    def _mark_engaged(self) -> None:
        if self._engaged is not None:
            self._engaged(self._place.key)
