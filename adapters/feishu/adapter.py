"""Feishu / Lark: events by long connection or webhook, answers as streaming cards.

Handlers registered on lark's EventDispatcherHandler run synchronously, on the long
connection's own loop (or inside the webhook request); they only hand the event to the
service loop (call_soon_threadsafe) and return, so the ack goes out at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from lark_oapi.api.im.v1 import P2ImMessageReceiveV1
from lark_oapi.core.const import (
    LARK_REQUEST_NONCE,
    LARK_REQUEST_SIGNATURE,
    LARK_REQUEST_TIMESTAMP,
)
from lark_oapi.core.model import RawRequest
from lark_oapi.core.utils import AESCipher
from lark_oapi.event.callback.model.p2_card_action_trigger import (
    P2CardActionTrigger,
    P2CardActionTriggerResponse,
)
from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

from adapters import payload
from adapters.base import AdapterStatus, Check, Core, InFlight
from adapters.feishu.client import FeishuApi, FeishuApiError
from adapters.feishu.config import FeishuSettings
from adapters.feishu.connection import LongConnection
from adapters.feishu.convert import Click, ReplyTarget, click, event_type, received
from adapters.feishu.files import resource_fetch
from adapters.feishu.names import FeishuDirectory
from adapters.feishu.reply import FeishuReplyChannel, ReplyOptions
from adapters.streaming import Recent
from engine.catalog import both
from engine.messages import ChatType, ThreadKey
from engine.messages import Click as CoreClick

log = logging.getLogger(__name__)

REMEMBERED_CLICKS = 10_000
REQUEST_WINDOW = 300  # seconds: a signed request older or newer than this is refused (replays)
HANDLED = {
    "im.message.receive_v1",
    "card.action.trigger",
    # document changes for the Feishu knowledge sources (adapters/feishu/documents/events.py)
    "drive.file.edit_v1",
    "drive.file.title_updated_v1",
    "drive.file.permission_member_added_v1",
    "drive.file.permission_member_removed_v1",
    "drive.file.trashed_v1",
    "drive.file.deleted_v1",
}

# Scopes the adapter needs, each with what it is for (`teambot doctor` names the missing ones).
SCOPES: list[tuple[tuple[str, ...], str, bool]] = [
    (("im:message",), "send replies and cards as the bot (获取与发送单聊、群组消息)", True),
    (
        ("im:message.group_at_msg:readonly", "im:message.group_at_msg"),
        "receive group messages that @mention the bot (接收群聊中@机器人消息事件)",
        True,
    ),
    (
        ("im:message.p2p_msg:readonly", "im:message.p2p_msg"),
        "receive one-to-one messages (读取用户发给机器人的单聊消息)",
        True,
    ),
]
CARDKIT_SCOPE = (("cardkit:card:write",), "stream answers into CardKit cards (创建与更新卡片)")
# names in the agents' console: missing ones only cost names (ids are shown instead)
NAME_SCOPES = [
    (("contact:user.base:readonly",), "askers' names in the agents' console (获取用户基本信息)"),
    (("im:chat:readonly", "im:chat"), "group names in the agents' console (获取群组信息)"),
]
AGENT_SCOPE = (
    ("im:message.group_msg",),
    "see agents' replies in escalated threads without an @mention (获取群组中所有消息)",
)


class _Refused(Exception):
    """A webhook check failed: answer `status` with `reason`."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status, self.reason = status, reason


class FeishuAdapter:
    """Answers @mentions in groups and topics, and one-to-one messages, in Feishu / Lark."""

    name = "feishu"

    def __init__(self, settings: FeishuSettings, core: Core) -> None:
        self._settings = settings
        self._core = core
        secret = settings.app_secret.get_secret_value() if settings.app_secret else ""
        self._api = FeishuApi(settings.app_id, secret, settings.domain, settings.request_timeout)
        self.directory = FeishuDirectory(self._api)  # names for the console
        self._resource = resource_fetch(self._api)  # the attachment port
        self._encrypt_key = settings.encrypt_key.get_secret_value() if settings.encrypt_key else ""
        self._token = (
            settings.verification_token.get_secret_value() if settings.verification_token else ""
        )
        self._options = ReplyOptions(
            update_interval=settings.update_interval,
            use_cardkit=settings.use_cardkit,
            domain=settings.domain,
            escalation_chat_id=settings.escalation_chat_id,
            agents=list(settings.agents),
        )
        self.dispatcher = (
            EventDispatcherHandler.builder(self._encrypt_key, self._token)
            .register_p2_im_message_receive_v1(self._on_message)
            .register_p2_card_action_trigger(self._on_card_action)
            .register_p2_drive_file_edit_v1(self._on_document("edited"))
            .register_p2_drive_file_title_updated_v1(self._on_document("edited"))
            .register_p2_drive_file_permission_member_added_v1(self._on_document("shared"))
            .register_p2_drive_file_permission_member_removed_v1(self._on_document("shared"))
            .register_p2_drive_file_trashed_v1(self._on_document("deleted"))
            .register_p2_drive_file_deleted_v1(self._on_document("deleted"))
            .build()
        )
        # (change, document token) for subscribed documents; set where the runtime is composed
        self.documents_changed: Callable[[str, str], None] | None = None
        self.bot_open_id = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._in_flight = InFlight("feishu")
        self._accepting = False
        self._connection: LongConnection | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._last_event: float | None = None
        self.channels: list[FeishuReplyChannel] = []  # the latest few, for tests and benchmarks
        self._clicks: Recent[str, bool] = Recent(REMEMBERED_CLICKS)  # clicks seen lately

    # -- lifecycle ----------------------------------------------------------------------------

    def router(self) -> APIRouter | None:
        if self._settings.mode != "webhook":
            return None
        router = APIRouter()
        router.add_api_route("/feishu/events", self._webhook, methods=["POST"])
        return router

    async def start(self) -> None:
        self._require_settings()
        self._loop = asyncio.get_running_loop()
        try:
            bot = await self._api.bot_info()  # the token is fetched in a thread, not here
        except FeishuApiError as error:
            raise RuntimeError(
                f"Feishu bot info could not be fetched ({error}): check [feishu] app_id, "
                "TEAMBOT_FEISHU__APP_SECRET and [feishu] domain, and that the app has the bot "
                "capability (应用能力 → 机器人) and a published version; `teambot doctor` tells more"
            ) from error
        self.bot_open_id = bot.open_id
        self._accepting = True
        log.info("feishu: bot %s (%s), %s mode", bot.name, bot.open_id, self._settings.mode)
        if self._settings.mode == "long_connection":
            secret = (
                self._settings.app_secret.get_secret_value() if self._settings.app_secret else ""
            )
            self._connection = LongConnection(
                self._settings.app_id, secret, self._settings.domain, self.dispatcher, HANDLED
            )
            await self._connection.start(wait=15.0)
            self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._accepting = False
        if self._watchdog is not None:
            self._watchdog.cancel()
            await asyncio.gather(self._watchdog, return_exceptions=True)
        if self._connection is not None:
            await self._connection.stop()
        await self.drain(self._settings.stop_timeout)

    async def drain(self, deadline: float | None = None) -> None:
        """Wait for answers in flight (at most `deadline` seconds, then cancel them)."""
        if deadline is None:
            await self._in_flight.drain()
        else:
            await self._in_flight.stop(deadline)

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> FeishuReplyChannel | None:
        """Replies to the thread's root message; None for topic threads (omt_…), which the reply
        API cannot address without a message id."""
        if key.platform != self.name or not key.thread_id.startswith("om_"):
            return None
        target = ReplyTarget(key, key.thread_id, in_thread=False)
        return self._channel(target, "zh", scope=f"{key.thread_id}:console:{time.time_ns()}")

    def status(self) -> AdapterStatus:
        age = None if self._last_event is None else time.monotonic() - self._last_event
        if self._connection is None:
            return AdapterStatus(connected=None, mode="webhook", last_event_age=age)
        frame_age = self._connection.last_frame_age
        detail = f"{self._connection.connects} connects, {self._connection.renewals} renewed"
        if frame_age is not None:
            detail += f", last frame {frame_age:.0f} s ago"
        return AdapterStatus(
            connected=self._connection.connected,
            mode="long connection",
            last_event_age=age,
            detail=detail,
        )

    async def _watch(self) -> None:
        """Renew a long connection that went quiet (no event, no pong) for watchdog_idle."""
        idle = self._settings.watchdog_idle
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            connection = self._connection
            age = connection.last_frame_age if connection else None
            if connection is not None and age is not None and age > idle:
                log.warning("feishu: long connection quiet for %.0f s, renewing it", age)
                connection.renew()

    def _require_settings(self) -> None:
        missing = []
        if not self._settings.app_id:
            missing.append("[feishu] app_id")
        if not self._settings.app_secret:
            missing.append("TEAMBOT_FEISHU__APP_SECRET")
        if self._settings.mode == "webhook" and not self._token:
            missing.append("TEAMBOT_FEISHU__VERIFICATION_TOKEN (webhook mode)")
        if missing:
            raise RuntimeError(
                f"Feishu is enabled but {', '.join(missing)} is not set: copy them from the "
                "developer console (凭证与基础信息 / 事件与回调 → 加密策略), or disable the "
                "adapter with [feishu] enabled = false"
            )

    # -- intake -------------------------------------------------------------------------------

    def _on_message(self, event: P2ImMessageReceiveV1) -> None:
        """Called by lark on its own loop (long connection) or in the webhook request."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        loop.call_soon_threadsafe(self._accept, event)

    def _on_document(self, change: str) -> Callable[[Any], None]:
        """A handler for one kind of drive change event (edited, shared, deleted)."""

        def handle(event: Any) -> None:
            token = getattr(event.event, "file_token", None) if event.event else None
            loop, notify = self._loop, self.documents_changed
            if token and notify is not None and loop is not None and not loop.is_closed():
                loop.call_soon_threadsafe(notify, change, str(token))

        return handle

    def _on_card_action(self, event: P2CardActionTrigger) -> P2CardActionTriggerResponse:
        action = event.event.action if event.event else None
        clicked = click(action.value if action else None)
        operator = event.event.operator if event.event else None
        user = (operator.open_id if operator else None) or ""
        loop = self._loop
        if clicked is None or loop is None or loop.is_closed():
            return P2CardActionTriggerResponse({})
        if self._seen_click(event):
            log.info("feishu: a card click delivered again was acknowledged, not repeated")
        else:
            loop.call_soon_threadsafe(self._accept_click, clicked, user)
        toast = both("thanks_feedback" if clicked.action == "up" else "asking_colleague")
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": toast}})

    def _seen_click(self, event: P2CardActionTrigger) -> bool:
        """Whether this click (its event id, else its token) was handled already: a replayed
        or redelivered "转人工" click must escalate once."""
        header_id = event.header.event_id if event.header else None
        token = event.event.token if event.event else None
        key = header_id or token
        if not key:
            return False
        return not self._clicks.add(key, True)

    def _accept(self, event: P2ImMessageReceiveV1) -> None:
        if not self._accepting:
            return
        self._last_event = time.monotonic()
        try:
            message = received(event, self.bot_open_id, self._settings.agents, self._resource)
        except Exception:  # a malformed event must not take the intake down
            log.exception("feishu: event could not be read")
            return
        if message is None or message.from_app:
            return
        inbound = message.inbound
        log.info(
            "feishu: message %s (event %s) in %s",
            inbound.message_id,
            message.event_id,
            inbound.chat_id,
        )
        # a mention, a follow-up, an agent's reply or chatter: the core decides from the store
        self._spawn(self._core.handle(inbound, self._channel(message.target)))

    def _accept_click(self, clicked: Click, user: str) -> None:
        if not self._accepting:
            return
        self._last_event = time.monotonic()
        if clicked.action == "up":
            self._spawn(self._core.clicked(CoreClick("up", user, clicked.turn_id)))
            return
        scope = f"{clicked.target.message_id}:human:{clicked.turn_id}"
        channel = self._channel(clicked.target, "zh", scope=scope)
        self._spawn(
            self._core.clicked(CoreClick("human", user, thread=clicked.target.key), channel)
        )

    def _channel(
        self, target: ReplyTarget, language: str = "en", scope: str = ""
    ) -> FeishuReplyChannel:
        channel = FeishuReplyChannel(self._api, target, self._options, language, scope=scope)
        self.channels = [*self.channels[-49:], channel]
        return channel

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        self._in_flight.spawn(work)

    # -- webhook ------------------------------------------------------------------------------

    async def _webhook(self, request: Request) -> Response:
        """Intake as a chain of checks: open (decrypt) → token → signature and replay window →
        dispatch; a failed check answers with its reason."""
        body = await request.body()
        try:
            plain = self._opened(body)
            self._check_token(plain)
            if plain.get("type") == "url_verification":
                return JSONResponse({"challenge": plain.get("challenge", "")})
            raw = self._signed(request, body)
        except _Refused as refused:
            return _refuse(refused.status, refused.reason, request)
        if not self._accepting:
            return JSONResponse({"msg": "starting or stopping"}, status_code=503)
        return self._dispatch(plain, raw)

    def _opened(self, body: bytes) -> dict[str, Any]:
        """The event as a JSON object, decrypted when it came encrypted (as it must when an
        encrypt_key is configured, and must not otherwise)."""
        try:
            envelope = payload.loads(body)
        except payload.PayloadError as error:
            raise _Refused(400, str(error)) from None
        if not isinstance(envelope, dict):
            raise _Refused(400, "body is not a JSON object")
        if "encrypt" not in envelope:
            if self._encrypt_key:
                raise _Refused(400, "unencrypted event while an encrypt_key is configured")
            return envelope
        if not self._encrypt_key:
            raise _Refused(400, "encrypted event but no encrypt_key is configured")
        try:
            decrypted = AESCipher(self._encrypt_key).decrypt_str(str(envelope["encrypt"]))
        except Exception:  # the cipher's errors for a wrong key or a garbled text vary
            raise _Refused(400, "event could not be decrypted (wrong encrypt_key?)") from None
        try:
            plain = payload.loads(decrypted, what="decrypted event")
        except payload.PayloadError as error:
            raise _Refused(400, str(error)) from None
        if not isinstance(plain, dict):
            raise _Refused(400, "decrypted event is not an object")
        return plain

    def _check_token(self, plain: dict[str, Any]) -> None:
        header = plain.get("header") if isinstance(plain.get("header"), dict) else {}
        token = header.get("token") if header else plain.get("token")
        if not self._token or token != self._token:
            raise _Refused(401, "verification token mismatch")

    def _signed(self, request: Request, body: bytes) -> RawRequest:
        """The request as lark-oapi reads it, its signature and timestamp checked when an
        encrypt_key is configured (Feishu signs only then)."""
        raw = RawRequest()
        raw.uri = request.url.path
        raw.body = body
        raw.headers = {
            name: request.headers.get(name, "")
            for name in (LARK_REQUEST_TIMESTAMP, LARK_REQUEST_NONCE, LARK_REQUEST_SIGNATURE)
        }
        if self._encrypt_key:
            try:
                self.dispatcher._verify_sign(raw, self._encrypt_key)
            except Exception:
                raise _Refused(401, "signature check failed") from None
            stale = _stale(raw.headers.get(LARK_REQUEST_TIMESTAMP, ""), time.time())
            if stale:
                raise _Refused(401, stale)
        return raw

    def _dispatch(self, plain: dict[str, Any], raw: RawRequest) -> Response:
        """Hand a checked event to lark-oapi's dispatcher (our handlers only schedule work)."""
        kind = event_type(plain)
        if kind not in HANDLED:
            # acknowledged, or Feishu would redeliver an event this bot never handles forever
            log.info("feishu webhook: event type %r is not handled here; acknowledged", kind)
            return JSONResponse({})
        answer = self.dispatcher.do(raw)
        if (answer.status_code or 200) >= 500:
            log.warning(
                "feishu webhook: a signed %s event could not be read (%s); acknowledged",
                kind,
                (answer.content or b"")[:200].decode("utf-8", "replace"),
            )
            return JSONResponse({})
        return Response(
            content=answer.content or b"",
            status_code=answer.status_code or 200,
            media_type="application/json",
        )

    # -- doctor -------------------------------------------------------------------------------

    async def check(self) -> list[Check]:
        checks: list[Check] = []
        try:
            self._require_settings()
        except RuntimeError as error:
            return [Check("settings", "error", str(error))]
        try:
            await self._api.tenant_token()
            checks.append(Check("token", "ok", f"tenant token for {self._settings.app_id}"))
        except FeishuApiError as error:
            checks.append(Check("token", "error", f"{error}: check app_id / app_secret / domain"))
            return checks
        try:
            bot = await self._api.bot_info()
            checks.append(Check("bot", "ok", f"{bot.name} ({bot.open_id})"))
        except FeishuApiError as error:
            checks.append(
                Check("bot", "error", f"{error}: enable the bot capability (应用能力 → 机器人)")
            )
        checks.extend(await self._scope_checks())
        if self._settings.mode == "webhook" and not self._encrypt_key:
            checks.append(
                Check(
                    "webhook", "warning", "no encrypt_key: events are neither encrypted nor signed"
                )
            )
        return checks

    async def _scope_checks(self) -> list[Check]:
        try:
            granted = await self._api.granted_scopes()
        except FeishuApiError as error:
            return [Check("permissions", "warning", f"could not list the app's scopes: {error}")]
        wanted = [(names, why, True) for names, why, _ in SCOPES]
        if self._settings.use_cardkit:
            wanted.append((*CARDKIT_SCOPE, True))
        if self._settings.agents:
            wanted.append((*AGENT_SCOPE, False))
        wanted.extend((names, why, False) for names, why in NAME_SCOPES)
        missing = [
            (names, why, needed) for names, why, needed in wanted if not set(names) & granted
        ]
        if not missing:
            return [Check("permissions", "ok", f"{len(wanted)} needed scopes granted")]
        return [
            Check(
                f"permission {names[0]}",
                "error" if needed else "warning",
                f"missing: {why}. Add it under 权限管理 (Permissions) and publish a version",
            )
            for names, why, needed in missing
        ]


def _stale(stamp: str, now: float) -> str:
    """Why a signed request's timestamp is refused (a replay window like Slack's), or ""."""
    try:
        sent = float(stamp)
    except ValueError:
        return "X-Lark-Request-Timestamp is missing or not a number"
    if not abs(now - sent) <= REQUEST_WINDOW:  # also catches nan
        return f"request timestamp is more than {REQUEST_WINDOW} s away from now (a replay?)"
    return ""


def _refuse(status: int, why: str, request: Request) -> Response:
    client = request.client.host if request.client else "?"
    log.warning("feishu webhook: refused a request from %s: %s", client, why)
    return JSONResponse({"msg": why}, status_code=status)
