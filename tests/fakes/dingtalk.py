"""A fake DingTalk speaking the real protocols over real HTTP and WebSocket on 127.0.0.1.

One aiohttp server, run on the test's own event loop (the SDK's blocking calls run in threads):
- Stream gateway: `POST /v1.0/gateway/connections/open` checks the app credentials and returns
  `{endpoint: ws://127.0.0.1:P/gateway, ticket}`; the WebSocket takes the ticket, and the fake
  pushes JSON frames (`CALLBACK` bot messages and card clicks, `SYSTEM` pings) and records acks.
- `POST /v1.0/oauth2/accessToken` (appKey/appSecret -> accessToken, expireIn).
- A session webhook (`POST /robot/sendBySession?session=…`).
- Robot OpenAPI: `/v1.0/robot/groupMessages/send`, `/v1.0/robot/oToMessages/batchSend`.
- Knowledge bases (`wikis`): workspaces, nodes and document blocks.
- AI card OpenAPI: `POST /v1.0/card/instances/createAndDeliver`, `PUT /v1.0/card/instances`,
  `PUT /v1.0/card/streaming`.
Every HTTP call is recorded as a `Call` with its arrival time; tests await conditions on them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.dingtalk_wiki import Wikis

BOT_TOPIC = "/v1.0/im/bot/messages/get"
CARD_TOPIC = "/v1.0/card/instances/callback"


@dataclass
class Call:
    method: str
    path: str
    body: Any
    headers: dict[str, str]
    query: dict[str, str]
    at: float = field(default_factory=time.monotonic)


@dataclass
class Behaviour:
    fail_cards: bool = False  # card calls answer HTTP 500
    fail_webhook: bool = False  # the session webhook answers HTTP 500
    token_lifetime: int = 7200
    ping_interval: float | None = None  # seconds between SYSTEM ping frames; None: no pings
    refuse_open: bool = False  # the gateway answers connections/open with HTTP 503
    hang_open: bool = False  # the gateway takes connections/open and never answers
    foreign_download: bool = False  # messageFiles/download points at a host not DingTalk's
    refuse_download: int = 0  # messageFiles/download answers this HTTP status (403, 429 …)


class FakeDingTalk:
    def __init__(self, client_id: str = "ding-app", client_secret: str = "s3cret") -> None:
        self.client_id, self.client_secret = client_id, client_secret
        self.behaviour = Behaviour()
        self.calls: list[Call] = []
        self.acks: dict[str, dict[str, Any]] = {}  # frame messageId -> ack frame
        self.acked_at: dict[str, float] = {}  # frame messageId -> monotonic arrival time
        self.opens = 0  # connections/open calls
        self.sockets: list[web.WebSocketResponse] = []
        self.connected_total = 0
        self.tokens_issued = 0
        self._tickets: set[str] = set()
        self.files: dict[str, bytes] = {}  # downloadCode -> the file's bytes
        self._links: dict[str, bytes] = {}  # temporary download token -> bytes
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self.port = 0
        self.wikis = Wikis()  # knowledge bases (tests.fakes.dingtalk_wiki)

    # -- lifecycle --

    async def __aenter__(self) -> FakeDingTalk:
        app = web.Application()
        app.router.add_post("/v1.0/gateway/connections/open", self._open)
        app.router.add_get("/gateway", self._gateway)
        app.router.add_post("/v1.0/oauth2/accessToken", self._token)
        app.router.add_post("/robot/sendBySession", self._webhook)
        app.router.add_post("/v1.0/robot/groupMessages/send", self._api)
        app.router.add_post("/v1.0/robot/oToMessages/batchSend", self._api)
        app.router.add_post("/v1.0/card/instances/createAndDeliver", self._card)
        app.router.add_put("/v1.0/card/instances", self._card)
        app.router.add_put("/v1.0/card/streaming", self._card)
        app.router.add_post("/v1.0/robot/messageFiles/download", self._file_url)
        app.router.add_get("/oss/{token}", self._file)
        self.wikis.install(app, self._authorized_request)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *_: object) -> None:
        for socket in list(self.sockets):
            await socket.close()
        assert self._runner is not None
        await self._runner.cleanup()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def webhook(self, session: str = "s1") -> str:
        return f"{self.base_url}/robot/sendBySession?session={session}"

    # -- what tests do --

    async def push(self, data: dict[str, Any], *, topic: str = BOT_TOPIC) -> str:
        """Send a CALLBACK frame on the newest connection; returns the frame's messageId."""
        frame_id = uuid.uuid4().hex
        frame = {
            "specVersion": "1.0",
            "type": "CALLBACK",
            "headers": {
                "appId": self.client_id,
                "connectionId": "c1",
                "contentType": "application/json",
                "messageId": frame_id,
                "time": str(int(time.time() * 1000)),
                "topic": topic,
            },
            "data": json.dumps(data, ensure_ascii=False),
        }
        await self.wait_for(lambda: bool(self.sockets))
        await self.sockets[-1].send_str(json.dumps(frame, ensure_ascii=False))
        return frame_id

    async def send_raw(self, text: str) -> None:
        """Any text as one frame on the newest connection (a garbled or hostile frame)."""
        await self.wait_for(lambda: bool(self.sockets))
        await self.sockets[-1].send_str(text)

    async def ack(self, frame_id: str, within: float = 5.0) -> dict[str, Any]:
        await self.wait_for(lambda: frame_id in self.acks, within)
        return self.acks[frame_id]

    async def drop(self) -> None:
        """Cut every open connection without a close handshake (a network failure)."""
        for socket in list(self.sockets):
            transport = socket._req.transport if socket._req else None  # type: ignore[attr-defined]
            if transport is not None:
                transport.abort()

    def sent(self, *paths: str) -> list[Call]:
        return [c for c in self.calls if c.path in paths]

    async def wait_for(self, condition: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(condition)

    def behave(self, **changes: Any) -> None:
        for name, value in changes.items():
            setattr(self.behaviour, name, value)

    # -- handlers --

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _record(self, request: web.Request) -> Call:
        text = await request.text()
        call = Call(
            request.method,
            request.path,
            json.loads(text) if text else None,
            dict(request.headers),
            dict(request.query),
        )
        self.calls.append(call)
        await self._notify()
        return call

    async def _open(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.body or {}
        if (body.get("clientId"), body.get("clientSecret")) != (self.client_id, self.client_secret):
            return web.json_response(
                {"code": "InvalidAuthentication", "message": "clientId or clientSecret wrong"},
                status=401,
            )
        if self.behaviour.refuse_open:
            return web.json_response({"code": "ServiceUnavailable"}, status=503)
        while self.behaviour.hang_open:
            await asyncio.sleep(0.1)
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client gave up
        self.opens += 1
        ticket = uuid.uuid4().hex
        self._tickets.add(ticket)
        return web.json_response(
            {"endpoint": f"ws://127.0.0.1:{self.port}/gateway", "ticket": ticket}
        )

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        if ticket not in self._tickets:
            return web.Response(status=403, text="bad ticket")
        self._tickets.discard(ticket)  # tickets are single-use
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self.sockets.append(socket)
        self.connected_total += 1
        await self._notify()
        pinger = asyncio.create_task(self._ping(socket))
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    ack = json.loads(message.data)
                    self.acks[ack["headers"]["messageId"]] = ack
                    self.acked_at[ack["headers"]["messageId"]] = time.monotonic()
                    await self._notify()
        finally:
            pinger.cancel()
            self.sockets.remove(socket)
            await self._notify()
        return socket

    async def _ping(self, socket: web.WebSocketResponse) -> None:
        while not socket.closed:
            interval = self.behaviour.ping_interval
            await asyncio.sleep(interval or 0.05)
            if interval and not socket.closed:
                frame = {
                    "specVersion": "1.0",
                    "type": "SYSTEM",
                    "headers": {"messageId": uuid.uuid4().hex, "topic": "ping"},
                    "data": json.dumps({"opaque": uuid.uuid4().hex}),
                }
                await socket.send_str(json.dumps(frame))

    async def _token(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        body = call.body or {}
        if (body.get("appKey"), body.get("appSecret")) != (self.client_id, self.client_secret):
            return web.json_response(
                {"code": "invalidClientIdOrSecret", "message": "无效的clientId或者clientSecret"},
                status=400,
            )
        self.tokens_issued += 1
        return web.json_response(
            {
                "accessToken": f"token-{self.tokens_issued}",
                "expireIn": self.behaviour.token_lifetime,
            }
        )

    async def _authorized_request(self, request: web.Request) -> bool:
        return self._authorized(await self._record(request))

    def _authorized(self, call: Call) -> bool:
        token = call.headers.get("x-acs-dingtalk-access-token", "")
        return token == f"token-{self.tokens_issued}" and self.tokens_issued > 0

    async def _webhook(self, request: web.Request) -> web.Response:
        await self._record(request)
        if self.behaviour.fail_webhook:
            return web.json_response({"errcode": 500, "errmsg": "system error"}, status=500)
        return web.json_response({"errcode": 0, "errmsg": "ok"})

    async def _api(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return web.json_response({"code": "InvalidAuthentication"}, status=401)
        return web.json_response({"processQueryKey": uuid.uuid4().hex})

    async def _card(self, request: web.Request) -> web.Response:
        call = await self._record(request)
        if not self._authorized(call):
            return web.json_response({"code": "InvalidAuthentication"}, status=401)
        if self.behaviour.fail_cards:
            return web.json_response({"code": "forbidden.accessDenied"}, status=403)
        if call.path.endswith("createAndDeliver"):
            result = {"outTrackId": call.body["outTrackId"], "deliverResults": [{"success": True}]}
            return web.json_response({"success": True, "result": result})
        return web.json_response({"success": True, "result": True})

    async def _file_url(self, request: web.Request) -> web.Response:
        """POST /v1.0/robot/messageFiles/download {downloadCode, robotCode}: a temporary URL
        (on this server, standing in for DingTalk's object storage), or DingTalk's refusals."""
        call = await self._record(request)
        if not self._authorized(call):
            return web.json_response({"code": "InvalidAuthentication"}, status=401)
        body = call.body or {}
        if self.behaviour.refuse_download:
            code = {403: "Forbidden.AccessDenied.AccessTokenPermissionDenied", 429: "Throttling"}
            status = self.behaviour.refuse_download
            return web.json_response({"code": code.get(status, "failed")}, status=status)
        if body.get("robotCode") != self.client_id:
            return web.json_response({"code": "invalidParameter.robotCode"}, status=400)
        data = self.files.get(str(body.get("downloadCode")))
        if data is None:
            message = "downloadCode is invalid or expired"
            return web.json_response(
                {"code": "invalidParameter.downloadCode", "message": message}, status=400
            )
        token = uuid.uuid4().hex
        self._links[token] = data
        host = "files.example.net" if self.behaviour.foreign_download else "127.0.0.1"
        return web.json_response({"downloadUrl": f"http://{host}:{self.port}/oss/{token}"})

    async def _file(self, request: web.Request) -> web.Response:
        await self._record(request)
        data = self._links.get(request.match_info["token"])
        if data is None:
            return web.Response(status=404, text="NoSuchKey")
        return web.Response(body=data, content_type="application/octet-stream")


def bot_message(
    text: str = "How do I reset my VPN connection?",
    *,
    msg_id: str | None = None,
    group: bool = True,
    sender: str = "staff-ada",
    nick: str = "Ada",
    conversation: str = "cid-group-1",
    webhook: str = "",
    expires_in_ms: int = 3_600_000,
    mentioned: bool = True,
    msgtype: str = "text",
    content: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A bot message callback's data as DingTalk sends it (field names from the real payload)."""
    now = int(time.time() * 1000)
    data: dict[str, Any] = {
        "conversationId": conversation if group else f"cid-direct-{sender}",
        "chatbotCorpId": "ding-corp",
        "chatbotUserId": "$:LWCP_v1:$bot",
        "msgId": msg_id or f"msg{uuid.uuid4().hex}",
        "senderNick": nick,
        "isAdmin": False,
        "senderStaffId": sender,
        "sessionWebhookExpiredTime": now + expires_in_ms,
        "createAt": now,
        "senderCorpId": "ding-corp",
        "conversationType": "2" if group else "1",
        "senderId": f"$:LWCP_v1:${sender}",
        "sessionWebhook": webhook,
        "robotCode": "ding-app",
        "msgtype": msgtype,
    }
    if group:
        data["isInAtList"] = mentioned
        data["conversationTitle"] = "IT help"
        data["atUsers"] = [{"dingtalkId": "$:LWCP_v1:$bot"}]
    if msgtype == "text":
        data["text"] = {"content": f" {text}"}
    else:
        data["content"] = content or {}
    return data
