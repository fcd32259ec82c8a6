"""DingTalk over Stream mode: receive bot messages and card clicks, ack at once, answer later."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import httpx
from dingtalk_stream import (
    AckMessage,
    CallbackHandler,
    CallbackMessage,
    CardCallbackMessage,
    ChatbotHandler,
    ChatbotMessage,
    Credential,
)
from dingtalk_stream.card_callback import Card_Callback_Router_Topic
from fastapi import APIRouter

from adapters.base import AdapterStatus, Check, Core, InFlight, Leadership
from adapters.dingtalk.client import DingTalkApiError, OpenApi
from adapters.dingtalk.config import DingTalkSettings
from adapters.dingtalk.convert import (
    ReplyTarget,
    escalation_markdown,
    mention,
    parse,
    reply_target,
    title_of,
    to_inbound,
)
from adapters.dingtalk.files import download_codes
from adapters.dingtalk.reply import DingTalkReplyChannel
from adapters.dingtalk.stream import StreamConnection
from adapters.streaming import Recent
from engine.catalog import phrase
from engine.messages import ChatType, Click, EscalationNotice, ThreadKey
from engine.text import split_text

log = logging.getLogger(__name__)

START_WAIT = 5.0  # seconds start() waits for the first connection before returning anyway
REMEMBERED_CARDS = 2000
REMEMBERED_DIRECT = 10_000
_HELPFUL, _UNHELPFUL, _HUMAN = {"helpful", "up"}, {"unhelpful", "down"}, {"human", "escalate"}


class _BotMessages(ChatbotHandler):  # type: ignore[misc]  # the SDK is untyped
    """The SDK handler for the bot message topic; its ack goes out when `process` returns."""

    def __init__(self, adapter: DingTalkAdapter) -> None:
        super().__init__()
        self._adapter = adapter

    async def process(self, callback: CallbackMessage) -> tuple[int, str]:
        return self._adapter.receive(callback.data)


class _CardActions(CallbackHandler):  # type: ignore[misc]  # the SDK is untyped
    """The SDK handler for AI card button callbacks (有帮助 / 转人工)."""

    def __init__(self, adapter: DingTalkAdapter) -> None:
        super().__init__()
        self._adapter = adapter

    async def process(self, callback: CallbackMessage) -> tuple[int, Any]:
        return self._adapter.card_action(callback.data)


class DingTalkAdapter:
    """Group @mentions and one-to-one messages over Stream mode, answered through the core."""

    name = "dingtalk"

    def __init__(
        self, settings: DingTalkSettings, core: Core, leadership: Leadership | None = None
    ) -> None:
        self._settings = settings
        self._core = core
        # DingTalk gives each event to one connection of the app; with several replicas, one
        # holds the Stream connection and the others stand by (see bot/leader.py).
        self._leadership = leadership
        self._standby = False
        self._stopped = asyncio.Event()
        self._became_standby = asyncio.Event()
        secret = settings.client_secret.get_secret_value() if settings.client_secret else ""
        self._secret = secret
        self.api = OpenApi(settings.openapi_endpoint, settings.client_id, secret, settings.robot)
        self._messages = _BotMessages(self)
        self._downloads = download_codes(self.api, settings.openapi_endpoint)  # attachment port
        self.connection = StreamConnection(
            Credential(settings.client_id, secret),
            endpoint=settings.openapi_endpoint,
            watchdog_idle=settings.watchdog_idle,
            backoff_initial=settings.reconnect_initial,
            backoff_max=settings.reconnect_max,
            open_timeout=settings.open_timeout,
        )
        self.connection.register_callback_handler(ChatbotMessage.TOPIC, self._messages)
        if settings.card_template_id:
            self.connection.register_callback_handler(
                Card_Callback_Router_Topic, _CardActions(self)
            )
        # the cards this process sent: their turn, for templates whose buttons do not send it
        # back, and the asker's session webhook to answer a click through
        self._cards: Recent[str, tuple[int, ReplyTarget]] = Recent(REMEMBERED_CARDS)
        # one-to-one conversation ids seen lately (for reply_channel)
        self._direct: Recent[str, str] = Recent(REMEMBERED_DIRECT)
        self._in_flight = InFlight("dingtalk")
        self._run: asyncio.Task[None] | None = None
        self._accepting = False

    def router(self) -> APIRouter | None:
        return None  # Stream mode: DingTalk is reached over the connection, no webhook

    async def start(self) -> None:
        missing = self._missing_credentials()
        if missing:
            raise RuntimeError(missing)
        self._accepting = True
        self._stopped.clear()
        if self._leadership is None:
            self._run = asyncio.create_task(self.connection.run())
        else:
            self._run = asyncio.create_task(self._lead(self._leadership))
        ready = asyncio.create_task(self.connection.ready.wait())
        standing_by = asyncio.create_task(self._became_standby.wait())
        await asyncio.wait(
            {ready, standing_by}, timeout=START_WAIT, return_when=asyncio.FIRST_COMPLETED
        )
        for task in (ready, standing_by):
            task.cancel()

    async def _lead(self, leadership: Leadership) -> None:
        """Hold the Stream connection while this replica holds the lease; stand by otherwise."""
        name = f"dingtalk:{self._settings.client_id}"
        while not self._stopped.is_set():
            try:
                lease = await leadership.acquire(name)
            except Exception as error:  # the database is down: try again, do not crash
                log.warning("DingTalk leadership check failed: %s", error)
                lease = None
            if lease is None:
                self._standby = True
                self._became_standby.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), self._settings.leader_poll)
                continue
            self._standby = False
            self._became_standby.clear()
            try:
                self.connection.resume()
                run = asyncio.create_task(self.connection.run())
                lost = asyncio.create_task(lease.lost.wait())
                stopped = asyncio.create_task(self._stopped.wait())
                await asyncio.wait({run, lost, stopped}, return_when=asyncio.FIRST_COMPLETED)
                await self.connection.stop()
                for task in (run, lost, stopped):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            finally:
                await lease.release()  # even when cancelled: a lock left held blocks takeover

    async def stop(self) -> None:
        self._accepting = False  # a message arriving now is refused, so DingTalk redelivers it
        self._stopped.set()
        await self.connection.stop()
        if self._run is not None:
            # with leadership the run loop also releases the lease: give it time to
            _, pending = await asyncio.wait(
                {self._run}, timeout=3 if self._leadership is None else 10
            )
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._in_flight.stop(self._settings.stop_timeout)
        await self.api.close()
        if self._leadership is not None:
            await self._leadership.close()

    async def drain(self) -> None:
        """Wait for the answers and clicks in flight (used at shutdown and by tests)."""
        await self._in_flight.drain()

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> DingTalkReplyChannel | None:
        """Through the robot OpenAPI: the group (the asker @mentioned), or the asker one to one,
        as the store keeps the thread's chat type; a thread from before it was stored, seen
        since the start or else taken for a group."""
        if key.platform != self.name or self._missing_credentials():
            return None
        target = self._target(key, chat_type)
        return DingTalkReplyChannel(self._settings, self, target, "zh")

    def status(self) -> AdapterStatus:
        conn = self.connection
        if self._standby:
            return AdapterStatus(
                connected=None,
                mode="stream (standby)",
                detail="another replica holds the DingTalk Stream connection",
            )
        detail = f"{conn.connects} connection(s) opened"
        if conn.last_error:
            detail += f"; last problem: {conn.last_error}"
        return AdapterStatus(
            connected=conn.connected,
            mode="stream",
            last_event_age=conn.last_frame_age,
            detail=detail,
        )

    async def check(self) -> list[Check]:
        missing = self._missing_credentials()
        if missing:
            return [Check("credentials", "error", missing)]
        checks = []
        api = OpenApi(
            self._settings.openapi_endpoint, self._settings.client_id, self._secret, "doctor"
        )
        try:
            await api.access_token()
            checks.append(Check("credentials", "ok", "access token fetched"))
        except DingTalkApiError as error:
            detail = (
                f"DingTalk refused the app credentials ({error.status}: {error.body[:200]}): "
                "copy Client ID and Client Secret from 开发者后台 → 应用 → 凭证与基础信息 into "
                "[dingtalk] client_id and TEAMBOT_DINGTALK__CLIENT_SECRET"
            )
            return [Check("credentials", "error", detail)]
        except httpx.HTTPError as error:
            endpoint = self._settings.openapi_endpoint
            return [Check("credentials", "error", f"cannot reach {endpoint}: {error}")]
        finally:
            await api.close()
        opened = await self.connection.open()
        if opened and "endpoint" in opened:
            checks.append(Check("stream", "ok", "the Stream gateway accepts this app"))
        else:
            checks.append(
                Check(
                    "stream",
                    "error",
                    "the Stream gateway refused a connection: set 消息接收模式 to Stream 模式 "
                    "on the robot (机器人) page and publish the app",
                )
            )
        if self._run is not None:
            state = self.status()
            age = "never" if state.last_event_age is None else f"{state.last_event_age:.0f} s ago"
            checks.append(
                Check(
                    "connection",
                    "ok" if state.connected else "warning",
                    f"{'connected' if state.connected else 'not connected'}; last frame {age}",
                )
            )
        if not self._settings.escalation_conversation_id:
            checks.append(
                Check(
                    "escalation",
                    "warning",
                    "escalations are only logged: set [dingtalk] escalation_conversation_id",
                )
            )
        return checks

    # -- intake (called by the SDK handlers on the service loop; must return at once) --

    def receive(self, data: Mapping[str, Any]) -> tuple[int, str]:
        if not self._accepting:
            return AckMessage.STATUS_SYSTEM_EXCEPTION, "shutting down"
        try:
            message = parse(data)
        except Exception as error:  # any malformed frame: log it, keep the connection
            log.warning("DingTalk bot message not understood, dropped: %s", error)
            return AckMessage.STATUS_OK, "OK"  # a redelivery would not parse any better
        self._spawn(self._answer(message, data))
        return AckMessage.STATUS_OK, "OK"

    def card_action(self, data: Mapping[str, Any]) -> tuple[int, Any]:
        callback = CardCallbackMessage.from_dict(dict(data))
        private = callback.content.get("cardPrivateData") or {}
        params = private.get("params") or {}
        actions = {str(a) for a in private.get("actionIds") or []} | {str(params.get("action", ""))}
        # the click carries its turn (the template's buttons send the card's turn_id back), so a
        # card answered before a restart, or by another replica, is still handled
        sent = self._cards.get(callback.card_instance_id)
        turn = _turn_id(params.get("turn_id")) or (sent[0] if sent else None)
        user = callback.user_id
        if turn is not None and actions & (_HELPFUL | _UNHELPFUL):
            value = "up" if actions & _HELPFUL else "down"
            self._spawn(self._core.clicked(Click(value, user, turn)))
        elif turn is not None and actions & _HUMAN:
            reply = self._reply_for if sent is None else self._reply(sent[1])
            self._spawn(self._core.clicked(Click("human", user, turn), reply))
        else:
            log.info(
                "DingTalk card action %s on unknown card %s", actions, callback.card_instance_id
            )
        return AckMessage.STATUS_OK, {}

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        self._in_flight.spawn(work)

    async def _answer(self, message: ChatbotMessage, raw: Mapping[str, Any]) -> None:
        target = reply_target(message)
        log.info(
            "DingTalk message %s in conversation %s (%s) from %s",
            message.message_id,
            target.conversation_id,
            message.conversation_title or "one to one",
            target.staff_id,
        )
        if not target.group:
            self._direct.put(target.conversation_id, target.staff_id)
        # the core places the message in the asker's window (and an agent's where escalated
        # askers wait): DingTalk has no threads
        window = self._settings.thread_idle_minutes * 60
        inbound = to_inbound(
            message, raw, self._settings.agents, self._downloads, idle_window=window
        )
        await self._core.handle(inbound, DingTalkReplyChannel(self._settings, self, target))

    # -- outbound (the Outbox the reply channels use) --

    async def send_markdown(self, target: ReplyTarget, text: str) -> None:
        """Through the session webhook while it is valid, else through the robot OpenAPI."""
        title = title_of(text)
        if target.message is not None and target.webhook_valid(int(time.time() * 1000)):
            body = mention(text, target, webhook=True)
            result = await asyncio.to_thread(
                self._messages.reply_markdown, title, body, target.message
            )
            if isinstance(result, dict) and result.get("errcode", 0) == 0:
                return
            log.warning("DingTalk session webhook failed (%s); using the OpenAPI", result)
        to = target.conversation_id if target.group else target.staff_id
        body = mention(text, target, webhook=False)
        await self.api.send_markdown(group=target.group, to=to, title=title, text=body)

    async def post_escalation(self, notice: EscalationNotice, target: ReplyTarget) -> None:
        group = self._settings.escalation_conversation_id
        if not group:
            log.warning("DingTalk escalation of %s not posted: no escalation group", notice.thread)
            return
        text = escalation_markdown(notice, self._settings.agents, target)
        for piece in split_text(text, self._settings.max_chars):
            await self.api.send_markdown(
                group=True, to=group, title=phrase("notice_title", "zh"), text=piece
            )

    def remember_card(self, out_track_id: str, turn_id: int, target: ReplyTarget) -> None:
        self._cards.put(out_track_id, (turn_id, target))

    def _reply(self, target: ReplyTarget) -> DingTalkReplyChannel:
        return DingTalkReplyChannel(self._settings, self, target, "en")

    def _reply_for(self, key: ThreadKey, chat_type: ChatType | None) -> DingTalkReplyChannel:
        """A channel into a thread the core found from a clicked card's turn: the chat type
        stored on the thread says group or one to one."""
        return self._reply(self._target(key, chat_type))

    def _target(self, key: ThreadKey, chat_type: ChatType | None) -> ReplyTarget:
        """Where a reply into `key` goes: the group, or the asker one to one — as the store
        keeps the thread's chat type; for a thread from before it was stored, as seen since
        the start, else a group."""
        asker = key.thread_id.rsplit("@", 1)[0]
        group = chat_type is ChatType.GROUP or (
            chat_type is None and key.chat_id not in self._direct
        )
        return ReplyTarget(conversation_id=key.chat_id, group=group, staff_id=asker, nick="")

    def _missing_credentials(self) -> str:
        if not self._settings.client_id:
            return (
                "[dingtalk] client_id is not set: create an app in the DingTalk developer console "
                "(开发者后台 → 应用开发 → 企业内部应用), add a robot in Stream mode, and copy its "
                "Client ID, or disable the adapter with [dingtalk] enabled = false"
            )
        if not self._secret:
            return (
                "TEAMBOT_DINGTALK__CLIENT_SECRET is not set: copy the app's Client Secret from "
                "凭证与基础信息, or disable the adapter with [dingtalk] enabled = false"
            )
        return ""


def _turn_id(value: object) -> int | None:
    """A turn id sent back by a card button ("123"), or None."""
    text = str(value or "").strip()
    return int(text) if text.isdigit() and len(text) < 19 else None
