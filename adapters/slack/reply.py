"""SlackReplyChannel: one answer in one Slack thread, streamed by coalesced edits."""

from __future__ import annotations

import asyncio
import logging
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
from adapters.streaming import Coalescer, ReplyTimings
from engine.messages import Answer, EscalationNotice
from engine.ports import ChannelLimits
from engine.text import clip, split_text

log = logging.getLogger(__name__)

# What a failed Slack call raises: an API error ({"ok": false}) or a transport problem.
SLACK_ERRORS = (SlackApiError, SlackClientError, OSError, asyncio.TimeoutError)


class SlackReplyChannel:
    """Placeholder at once, edits at most every `update_interval`, Block Kit at the end.

    `update()` never waits for Slack (adapters/streaming.py): a rate-limited edit (429,
    Retry-After) never stalls the model.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        place: Where,
        settings: SlackSettings,
        *,
        user_id: str = "",
        source_ts: str = "",
    ) -> None:
        self._client = client
        self._place = place
        self._settings = settings
        self._user_id = user_id
        self._source_ts = source_ts  # the asker's message (permalink target for DM top level)
        self._limits = ChannelLimits(max_chars=MESSAGE_CHARS, can_edit=True)
        self._native = settings.native_streaming and place.reply_ts is not None
        self._ts: str | None = None  # the message being edited or streamed
        self._streamed = ""  # text appended to a native stream so far
        self._broken = False  # an edit or the native stream failed: the final goes anew
        self.timings = ReplyTimings()
        self._edits = Coalescer(self._show_partial, settings.update_interval, timings=self.timings)

    @property
    def limits(self) -> ChannelLimits:
        return self._limits

    @property
    def place(self) -> Where:
        return self._place

    async def open(self, language: str = "en") -> None:
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
                    text=labels(language)["thinking"],
                )
        except SLACK_ERRORS as error:
            log.warning("slack: could not post the placeholder in %s: %s", self._place.key, error)
            self._native = False
            return
        self._ts = str(response["ts"])
        # The placeholder is a new message, not an edit: the first text may follow at once.
        self.timings.placeholder_shown()

    async def update(self, text: str) -> None:
        if self._ts is not None:
            self._edits.push(text)

    async def _show_partial(self, text: str) -> bool:
        try:
            await self._edit(text)
        except SLACK_ERRORS as error:
            log.warning("slack: streaming edit failed in %s: %s", self._place.key, error)
            return False  # stop editing: the final answer goes as a new message
        return True

    async def _edit(self, text: str) -> None:
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

    async def finish(self, answer: Answer) -> None:
        await self._edits.close()
        self._broken = self._broken or self._edits.broken
        if not answer.text.strip():
            return
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
