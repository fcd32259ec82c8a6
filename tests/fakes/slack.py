"""A fake Slack: the Web API (`/api/<method>`) and a Socket Mode server (`/link`) over real HTTP.

Runs on 127.0.0.1 with an ephemeral port in the test's own event loop:
`async with FakeSlack() as slack:` then point `AsyncWebClient(base_url=slack.api_url)` at it.
Every Web API call is recorded (`calls`, `calls_to`); `wait_for` awaits a condition on them.
Socket Mode as Slack does it: `apps.connections.open` returns `ws://…/link`, the server sends
`{"type": "hello"}`, then envelopes (`send_event`, `send_action`); the client acks with the
envelope id (`wait_ack`). `drop()` cuts the connection; `stall()` keeps it open but silent.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web
from slack_sdk.signature import SignatureVerifier

TEAM = "T0TEAM"
BOT_USER = "U0BOT"
BOT_ID = "B0BOT"
APP_ID = "A0APP"
BOT_TOKEN = "xoxb-test-token"
APP_TOKEN = "xapp-1-test-token"
SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
ALL_SCOPES = (
    "app_mentions:read,chat:write,channels:history,groups:history,im:history,mpim:history,"
    "users:read,channels:read,groups:read,files:read"
)


@dataclass
class Call:
    method: str
    args: dict[str, Any]
    at: float  # monotonic
    status: int = 200
    result: dict[str, Any] | None = None  # what the fake answered (on success)


@dataclass
class Failure:
    status: int
    retry_after: int | None = None
    error: str = ""


@dataclass
class Ack:
    envelope_id: str
    payload: dict[str, Any] | None
    at: float


@dataclass
class FakeSlack:
    scopes: str = ALL_SCOPES
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[Call] = field(default_factory=list)
    acks: dict[str, Ack] = field(default_factory=dict)
    threads: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    connections: int = 0
    stalled: bool = False
    # files served at url_private (path -> bytes) and messages conversations.history returns
    files: dict[str, bytes] = field(default_factory=dict)
    messages: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    file_requests: list[tuple[str, str]] = field(default_factory=list)  # (path, Authorization)

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self._failures: dict[str, list[Failure]] = {}
        self._ts = itertools.count(1)
        self._socket: web.WebSocketResponse | None = None
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._link)
        app.router.add_get("/files-pri/{path:.*}", self._file)
        app.router.add_get("/files-moved/{path:.*}", self._moved)
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.2
        )
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for socket in self._sockets:
            await socket.close()
        assert self._runner is not None
        await self._runner.cleanup()

    # -- control ------------------------------------------------------------------------------

    def calls_to(self, method: str) -> list[dict[str, Any]]:
        return [c.args for c in self.calls if c.method == method and c.status == 200]

    def fail_next(
        self, method: str, status: int = 429, *, retry_after: int | None = 1, error: str = ""
    ) -> None:
        """The next call to `method` gets this HTTP status (429: with Retry-After)."""
        self._failures.setdefault(method, []).append(Failure(status, retry_after, error))

    async def wait_for(self, condition: Callable[[], Any], within: float = 10.0) -> Any:
        """Wait until `condition()` is truthy (re-checked on every call, ack and connection)."""

        async def until() -> Any:
            async with self._changed:
                while not (result := condition()):
                    await self._changed.wait()
                return result

        return await asyncio.wait_for(until(), within)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def add_thread(self, channel: str, messages: list[dict[str, Any]]) -> None:
        """Messages `conversations.replies` returns for the thread started by the first one."""
        self.threads[(channel, messages[0]["ts"])] = messages

    def add_file(self, name: str, data: bytes, mimetype: str = "image/png") -> dict[str, Any]:
        """A file Slack holds; returns its `event.files[]` entry (url_private on this fake)."""
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        path = f"{TEAM}-{file_id}/{name}"
        self.files[path] = data
        return {
            "id": file_id,
            "name": name,
            "mimetype": mimetype,
            "size": len(data),
            "url_private": f"http://{self.host}:{self.port}/files-pri/{path}",
            "url_private_download": f"http://{self.host}:{self.port}/files-pri/{path}",
        }

    def add_message(self, channel: str, message: dict[str, Any]) -> None:
        """A message conversations.history (and .replies by its ts) returns."""
        self.messages[(channel, str(message["ts"]))] = message

    async def _file(self, request: web.Request) -> web.StreamResponse:
        """url_private: the bytes with the bot token; Slack answers a missing or wrong token
        with a sign-in redirect, which the fake makes a 403."""
        path = request.match_info["path"]
        auth = request.headers.get("Authorization", "")
        self.file_requests.append((path, auth))
        if auth != f"Bearer {BOT_TOKEN}":
            return web.Response(status=403, text="not_authed")
        data = self.files.get(path)
        if data is None:
            return web.Response(status=404, text="file_not_found")
        return web.Response(body=data, content_type="application/octet-stream")

    async def _moved(self, request: web.Request) -> web.StreamResponse:
        """A redirect to the same file: on this host by default, on another name for this
        server with `?away=1` (the token must not follow it there)."""
        host = "localhost" if request.query.get("away") else self.host
        location = f"http://{host}:{self.port}/files-pri/{request.match_info['path']}"
        raise web.HTTPFound(location)

    def _conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        found = self.messages.get((str(args["channel"]), str(args.get("latest", ""))))
        return {"messages": [found] if found else [], "has_more": False}

    def next_ts(self) -> str:
        return f"{int(time.time())}.{next(self._ts):06d}"

    # -- Socket Mode --------------------------------------------------------------------------

    async def send_envelope(
        self,
        kind: str,
        payload: dict[str, Any],
        *,
        retry_attempt: int = 0,
        envelope_id: str | None = None,
    ) -> str:
        envelope_id = envelope_id or uuid.uuid4().hex
        await self.wait_for(lambda: self._socket is not None and not self._socket.closed)
        assert self._socket is not None
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        await self._socket.send_str(json.dumps(envelope))
        return envelope_id

    async def send_event(
        self, event: dict[str, Any], *, retry_attempt: int = 0, event_id: str | None = None
    ) -> str:
        return await self.send_envelope(
            "events_api", event_body(event, event_id), retry_attempt=retry_attempt
        )

    async def send_action(self, payload: dict[str, Any]) -> str:
        return await self.send_envelope("interactive", payload)

    async def wait_ack(self, envelope_id: str, within: float = 5.0) -> Ack:
        return await self.wait_for(lambda: self.acks.get(envelope_id), within)  # type: ignore[no-any-return]

    async def wait_connections(self, count: int, within: float = 10.0) -> None:
        await self.wait_for(
            lambda: (
                self.connections >= count and self._socket is not None and not self._socket.closed
            ),
            within,
        )

    async def drop(self) -> None:
        """Cut the current connection without a close handshake, as a network failure does."""
        if self._socket is not None:
            transport = self._socket._req.transport if self._socket._req else None  # type: ignore[attr-defined]
            if transport is not None:
                transport.abort()

    def stall(self, stalled: bool = True) -> None:
        """Keep connections open but answer nothing (no pongs): a silently dead link."""
        self.stalled = stalled

    async def _link(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse(autoping=False)
        await socket.prepare(request)
        self.connections += 1
        self._socket = socket
        self._sockets.append(socket)
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": APP_ID}}
        hello["debug_info"] = {"host": "fake-slack", "approximate_connection_time": 3600}
        await socket.send_str(json.dumps(hello))
        await self._notify()
        async for message in socket:
            if self.stalled:
                continue
            if message.type == WSMsgType.PING:
                await socket.pong(message.data)
            elif message.type == WSMsgType.TEXT:
                data = json.loads(message.data)
                self.acks[data["envelope_id"]] = Ack(
                    data["envelope_id"], data.get("payload"), time.monotonic()
                )
                await self._notify()
        await self._notify()
        return socket

    # -- Web API ------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._answer(request)
        finally:
            await self._notify()

    async def _answer(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        body = await request.read()
        if body:
            if request.content_type == "application/json":
                args.update(json.loads(body))
            else:
                args.update(parse_qsl(body.decode()))
        auth = request.headers.get("Authorization", "")
        expected = APP_TOKEN if method == "apps.connections.open" else BOT_TOKEN
        if auth != f"Bearer {expected}" and args.get("token") != expected:
            self._record(method, args, 200)
            return web.json_response({"ok": False, "error": "invalid_auth"})
        failures = self._failures.get(method)
        if failures:
            failure = failures.pop(0)
            self._record(method, args, failure.status)
            headers = (
                {"Retry-After": str(failure.retry_after)} if failure.retry_after is not None else {}
            )
            if failure.status == 200:
                return web.json_response({"ok": False, "error": failure.error or "failed"})
            return web.json_response(
                {"ok": False, "error": failure.error or "ratelimited"},
                status=failure.status,
                headers=headers,
            )
        self._record(method, args, 200)
        handler = getattr(self, "_" + method.replace(".", "_"), None)
        if handler is None:
            return web.json_response({"ok": False, "error": "unknown_method"})
        result, headers = handler(args), {}
        self.calls[-1].result = result
        if method == "auth.test":
            headers = {"x-oauth-scopes": self.scopes}
        return web.json_response({"ok": True, **result}, headers=headers)

    def _record(self, method: str, args: dict[str, Any], status: int) -> None:
        self.calls.append(Call(method, args, time.monotonic(), status))

    def _auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        return {
            "url": "https://fake.slack.com/",
            "team": "Fake Team",
            "user": "teambot",
            "team_id": TEAM,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
        }

    def _apps_connections_open(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"url": f"ws://{self.host}:{self.port}/link"}

    def _chat_postMessage(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = self.next_ts()
        message = {
            "type": "message",
            "user": BOT_USER,
            "bot_id": BOT_ID,
            "ts": ts,
            "text": args.get("text", ""),
        }
        return {"channel": args["channel"], "ts": ts, "message": message}

    def _chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": args["ts"], "text": args.get("text", "")}

    def _chat_postEphemeral(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"message_ts": self.next_ts()}

    def _chat_getPermalink(self, args: dict[str, Any]) -> dict[str, Any]:
        ts = str(args["message_ts"]).replace(".", "")
        link = f"https://fake.slack.com/archives/{args['channel']}/p{ts}"
        return {"channel": args["channel"], "permalink": link}

    def _chat_startStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": self.next_ts()}

    def _chat_appendStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": args["ts"]}

    def _chat_stopStream(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": args["channel"], "ts": args["ts"]}

    def _conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args["channel"])
        is_im = channel.startswith("D")
        name = "" if is_im else channel.removeprefix("C0").lower()
        return {"channel": {"id": channel, "name": name, "is_im": is_im}}

    def _users_info(self, args: dict[str, Any]) -> dict[str, Any]:
        user = str(args["user"])
        name = user.removeprefix("U0").capitalize()  # U0ADA -> Ada
        return {"user": {"id": user, "name": name.lower(), "profile": {"display_name": name}}}

    def _conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        messages = self.threads.get((args["channel"], args["ts"]), [])
        latest = str(args.get("latest", ""))
        if latest and (found := self.messages.get((str(args["channel"]), latest))):
            messages = [messages[0], found] if messages else [found]
        return {"messages": messages[: int(args.get("limit", 1000))], "has_more": False}


# -- payload builders (shapes as Slack sends them) -----------------------------------------------


def event_body(event: dict[str, Any], event_id: str | None = None) -> dict[str, Any]:
    return {
        "token": "legacy-verification-token",
        "team_id": TEAM,
        "api_app_id": APP_ID,
        "event": event,
        "type": "event_callback",
        "event_id": event_id or f"Ev{uuid.uuid4().hex[:10].upper()}",
        "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM, "user_id": BOT_USER, "is_bot": True}],
        "is_ext_shared_channel": False,
    }


def user_message(
    text: str,
    *,
    channel: str = "C0GENERAL",
    user: str = "U0ADA",
    ts: str | None = None,
    thread_ts: str | None = None,
    kind: str = "app_mention",
    channel_type: str = "channel",
    **extra: Any,
) -> dict[str, Any]:
    """An `app_mention` or `message` event as a person's typed message produces it."""
    ts = ts or f"{int(time.time())}.{uuid.uuid4().int % 1_000_000:06d}"
    event: dict[str, Any] = {
        "type": kind,
        "user": user,
        "text": text,
        "ts": ts,
        "client_msg_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{channel}/{ts}")),
        "channel": channel,
        "event_ts": ts,
        "team": TEAM,
    }
    if kind == "message":
        event["channel_type"] = channel_type
    if thread_ts:
        event["thread_ts"] = thread_ts
    event.update(extra)
    return event


def block_action(
    action_id: str, value: str, *, channel: str, message: dict[str, Any], user: str = "U0ADA"
) -> dict[str, Any]:
    return {
        "type": "block_actions",
        "team": {"id": TEAM, "domain": "fake"},
        "user": {"id": user, "username": "ada", "team_id": TEAM},
        "api_app_id": APP_ID,
        "token": "legacy-verification-token",
        "container": {
            "type": "message",
            "message_ts": message["ts"],
            "channel_id": channel,
            "is_ephemeral": False,
        },
        "trigger_id": "1.2.3",
        "channel": {"id": channel, "name": "general"},
        "message": message,
        "response_url": "https://hooks.slack.invalid/actions/1",
        "actions": [
            {
                "action_id": action_id,
                "block_id": "teambot_feedback",
                "text": {"type": "plain_text", "text": "button"},
                "value": value,
                "type": "button",
                "action_ts": str(time.time()),
            }
        ],
    }


def signed_headers(
    body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None
) -> dict[str, str]:
    """Headers Slack sends with an HTTP event, signed with Slack's own algorithm."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=stamp, body=body)
    return {
        "content-type": "application/json",
        "x-slack-request-timestamp": stamp,
        "x-slack-signature": signature,
    }
