"""The Slack adapter: Socket Mode or HTTP events through slack-bolt, ack at once, answer in thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import aiohttp
from fastapi import APIRouter, Request, Response
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.adapter.starlette.async_handler import AsyncSlackRequestHandler
from slack_bolt.async_app import AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import AdapterStatus, Check, Core, InFlight
from adapters.slack import convert
from adapters.slack.checks import SlackConfigError, reason, resolve_mode, run_checks
from adapters.slack.config import SlackSettings
from adapters.slack.files import SlackFiles
from adapters.slack.names import SlackDirectory
from adapters.slack.reply import SLACK_ERRORS, SlackReplyChannel
from engine.messages import ChatType, Click, ThreadKey, ThreadMessage

log = logging.getLogger(__name__)


class SlackAdapter:
    """Slack through slack-bolt's AsyncApp; intake by Socket Mode or the HTTP Events API."""

    name = "slack"

    def __init__(self, settings: SlackSettings, core: Core) -> None:
        self._settings = settings
        self._core = core
        self._mode, self._problem = resolve_mode(settings)
        token = settings.bot_token.get_secret_value() if settings.bot_token else ""
        self._client = AsyncWebClient(
            token=token or None,
            base_url=settings.api_url,
            retry_handlers=[
                AsyncConnectionErrorRetryHandler(max_retry_count=2),
                AsyncRateLimitErrorRetryHandler(max_retry_count=3),  # honours Retry-After
            ],
        )
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        self.directory = SlackDirectory(self._client)  # names for the console
        self._files = SlackFiles(self._client, token)  # the attachment port
        self._app = AsyncApp(
            name="teambot",
            client=self._client,
            signing_secret=secret,
            request_verification_enabled=self._mode == "http",
            # The listeners only start a task, so Bolt may wait for them before it acks.
            process_before_response=True,
            logger=logging.getLogger("slack_bolt"),
        )
        self._app.event("app_mention")(self._on_mention)
        self._app.event("message")(self._on_message)
        self._app.action(convert.HELPFUL)(self._on_helpful)
        self._app.action(convert.ESCALATE)(self._on_escalate)
        self._in_flight = InFlight("slack")
        self._bot_user_id = ""
        self._team_id = ""
        self._socket: AsyncSocketModeHandler | None = None
        self._connector: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._last_event: float | None = None  # monotonic, any event or action
        self._last_frame = time.time()  # wall clock, like slack_sdk's ping-pong time
        self._reconnects = 0
        self._stopping = False

    # -- Adapter protocol ---------------------------------------------------------------------

    def router(self) -> APIRouter | None:
        if self._mode != "http":
            return None
        handler = AsyncSlackRequestHandler(self._app)
        router = APIRouter()

        @router.post("/slack/events")
        async def slack_events(request: Request) -> Response:
            if self._problem:
                return Response(status_code=503, content=self._problem)
            bad = convert.malformed_request(request.headers, await request.body())
            if bad:
                client = request.client.host if request.client else "?"
                log.warning("slack: refused a malformed request from %s: %s", client, bad)
                return Response(status_code=400, content=bad)
            retry = request.headers.get("x-slack-retry-num")
            if retry:
                reason = request.headers.get("x-slack-retry-reason", "")
                log.info("slack: redelivery %s (%s); answered once by message id", retry, reason)
            try:
                response = await handler.handle(request)
            except Exception:  # a request Bolt could not read is the sender's fault: 400
                log.warning("slack: a request could not be processed", exc_info=True)
                return Response(status_code=400, content="request could not be processed")
            if response.status_code >= 500:
                # Bolt could not process what the sender posted (it logged why): a retry
                # would fail the same way, so it is refused rather than asked for again
                log.warning("slack: a request Bolt could not process was refused with 400")
                return Response(status_code=400, content="request could not be processed")
            if response.status_code == 401:
                client = request.client.host if request.client else "?"
                log.warning(
                    "slack: refused a request from %s with a missing, stale or forged signature",
                    client,
                )
            return response

        return router

    async def start(self) -> None:
        if self._problem:
            raise SlackConfigError(self._problem)
        self._session = aiohttp.ClientSession()
        self._client.session = self._session
        try:
            identity = await self._client.auth_test()
        except SLACK_ERRORS as error:
            await self._close_session()
            raise SlackConfigError(
                f"Slack refused the bot token ({reason(error)}): check TEAMBOT_SLACK__BOT_TOKEN "
                f"(Slack app > OAuth & Permissions > Bot User OAuth Token) and [slack] api_url"
            ) from error
        self._bot_user_id = str(identity.get("user_id") or "")
        self._team_id = str(identity.get("team_id") or "")
        log.info(
            "slack: signed in as %s in team %s (%s mode)",
            self._bot_user_id,
            self._team_id,
            self._mode,
        )
        if self._mode == "socket":
            await self._start_socket()

    async def _start_socket(self) -> None:
        assert self._settings.app_token is not None
        ping = min(10.0, self._settings.watchdog_idle / 3)  # a healthy socket is never quiet
        self._socket = AsyncSocketModeHandler(
            self._app,
            app_token=self._settings.app_token.get_secret_value(),
            web_client=self._client,
            ping_interval=ping,
            logger=logging.getLogger("slack_sdk.socket_mode"),
        )
        self._socket.client.message_listeners.append(self._on_frame)
        self._connector = asyncio.create_task(self._socket.connect_async())  # type: ignore[no-untyped-call]
        done, _ = await asyncio.wait({self._connector}, timeout=15)
        if not done:
            # slack_sdk keeps retrying; /readyz shows "not connected" meanwhile.
            log.error("slack: Socket Mode not connected after 15 s; still trying")
        self._last_frame = time.time()
        self._watchdog = asyncio.create_task(self._watch())

    async def stop(self) -> None:
        self._stopping = True
        for task in (self._watchdog, self._connector):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._socket is not None:
            with contextlib.suppress(Exception):  # a broken socket must not keep the rest open
                await self._socket.close_async()  # type: ignore[no-untyped-call]
        await self._in_flight.stop(self._settings.stop_timeout)
        await self._close_session()
        await self._files.close()

    async def drain(self) -> None:
        """Wait until every answer in flight is done (tests, shutdown)."""
        await self._in_flight.drain()

    def reply_channel(
        self, key: ThreadKey, chat_type: ChatType | None = None
    ) -> SlackReplyChannel | None:
        """Posts into the thread (a DM's top level for DM threads) with chat.postMessage."""
        if key.platform != self.name or not key.chat_id or self._problem:
            return None
        reply_ts = None if key.thread_id == convert.DM_THREAD else key.thread_id
        place = convert.Where(key.tenant, key.chat_id, key.thread_id, reply_ts)
        return SlackReplyChannel(self._client, place, self._settings)

    def status(self) -> AdapterStatus:
        age = None if self._last_event is None else time.monotonic() - self._last_event
        who = f"bot {self._bot_user_id} in team {self._team_id}" if self._bot_user_id else ""
        if self._problem:
            return AdapterStatus(connected=False, mode=self._mode, detail=self._problem)
        if self._mode == "http":
            return AdapterStatus(connected=None, mode="http", last_event_age=age, detail=who)
        detail = f"{who}; {self._reconnects} watchdog reconnects".strip("; ")
        return AdapterStatus(
            connected=self.socket_connected, mode="socket", last_event_age=age, detail=detail
        )

    @property
    def socket_connected(self) -> bool:
        client = self._socket.client if self._socket is not None else None
        if client is None or client.closed or client.stale:
            return False
        session = client.current_session
        return session is not None and not session.closed

    async def check(self) -> list[Check]:
        if self._problem:
            return [Check("config", "error", self._problem)]
        return await run_checks(self._client, self._settings, self._mode)

    # -- intake -------------------------------------------------------------------------------

    async def _on_frame(self, client: Any, message: dict[str, Any], raw: str | None) -> None:
        self._last_frame = time.time()

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        self._last_event = time.monotonic()
        self._spawn(self._answer(event, self._tenant(body), mentioned=True))

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        self._last_event = time.monotonic()
        if not convert.is_from_person(event, self._bot_user_id):
            return
        if event.get("channel_type") == "im":
            self._spawn(self._answer(event, self._tenant(body), mentioned=True))
            return
        if convert.mentions(str(event.get("text") or ""), self._bot_user_id):
            return  # the app_mention event for the same message answers it
        # a follow-up, an agent's reply, or chatter: the core decides from the store
        self._spawn(self._answer(event, self._tenant(body), mentioned=False))

    async def _answer(self, event: Mapping[str, Any], tenant: str, *, mentioned: bool) -> None:
        if not convert.is_from_person(event, self._bot_user_id):
            return
        place = convert.where(event, tenant)
        history: tuple[ThreadMessage, ...] = ()
        if mentioned and convert.is_late_in_thread(event) and self._settings.history_limit > 0:
            history = await self._thread_history(event)
        event = await self._files.with_files(event)
        inbound = convert.to_inbound(
            event,
            tenant=tenant,
            bot_user_id=self._bot_user_id,
            mentioned=mentioned,
            history=history,
            agents=self._settings.agents,
            fetch=self._files.fetch,
        )
        reply = SlackReplyChannel(
            self._client,
            place,
            self._settings,
            user_id=inbound.sender.id,
            source_ts=str(event.get("ts") or ""),
        )
        await self._core.handle(inbound, reply)

    async def _thread_history(self, event: Mapping[str, Any]) -> tuple[ThreadMessage, ...]:
        try:
            response = await self._client.conversations_replies(
                channel=str(event["channel"]),
                ts=str(event["thread_ts"]),
                limit=self._settings.history_limit + 1,
            )
        except SLACK_ERRORS as error:
            log.warning("slack: could not read the thread for context: %s", reason(error))
            return ()
        return convert.thread_history(
            response.get("messages") or [],
            current_ts=str(event.get("ts")),
            bot_user_id=self._bot_user_id,
            limit=self._settings.history_limit,
            max_chars=self._settings.history_chars,
        )

    # -- buttons ------------------------------------------------------------------------------

    async def _on_helpful(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._last_event = time.monotonic()
        self._spawn(self._helpful(body, action))

    async def _helpful(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        channel = str(body["channel"]["id"])
        turn_id, place = convert.parse_button_value(str(action["value"]), channel)
        user = str(body["user"]["id"])
        await self._core.clicked(Click("up", user, turn_id))
        language = "zh" if "有帮助" in str(action.get("text", {}).get("text", "")) else "en"
        with contextlib.suppress(*SLACK_ERRORS):
            await self._client.chat_postEphemeral(
                channel=channel,
                user=user,
                thread_ts=place.reply_ts,
                text=convert.labels(language)["thanks"],
            )

    async def _on_escalate(self, ack: Any, body: dict[str, Any], action: dict[str, Any]) -> None:
        await ack()
        self._last_event = time.monotonic()
        self._spawn(self._escalate(body, action))

    async def _escalate(self, body: dict[str, Any], action: dict[str, Any]) -> None:
        channel = str(body["channel"]["id"])
        _, place = convert.parse_button_value(str(action["value"]), channel)
        user = str(body["user"]["id"])
        message_ts = str((body.get("message") or {}).get("ts") or "")
        reply = SlackReplyChannel(
            self._client, place, self._settings, user_id=user, source_ts=message_ts
        )
        await self._core.clicked(Click("human", user, thread=place.key), reply)

    # -- plumbing -----------------------------------------------------------------------------

    def _tenant(self, body: Mapping[str, Any]) -> str:
        team = body.get("team_id") or (body.get("team") or {}).get("id") or self._team_id
        return str(team)

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        if self._stopping:
            work.close()
            log.warning("slack: an event arrived while stopping; Slack will redeliver it")
            return
        self._in_flight.spawn(work)

    async def _watch(self) -> None:
        """Reconnect a Socket Mode connection that has gone quiet (no frame, no pong)."""
        idle = self._settings.watchdog_idle
        while True:
            await asyncio.sleep(min(idle / 4, 5.0))
            client = self._socket.client if self._socket is not None else None
            if client is None or client.closed:
                return
            heard = max(self._last_frame, client.last_ping_pong_time or 0.0)
            quiet = time.time() - heard
            if quiet < idle:
                continue
            log.warning("slack: Socket Mode quiet for %.0f s; reconnecting", quiet)
            self._reconnects += 1
            self._last_frame = time.time()
            try:
                await client.connect_to_new_endpoint(force=True)
            except Exception as error:  # keep watching: the next round tries again
                log.error("slack: reconnect failed: %s", error)

    async def _close_session(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
            self._client.session = None
