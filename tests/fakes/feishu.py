"""A fake Feishu Open API (and long-connection gateway) over real HTTP / WebSocket on 127.0.0.1.

Serves what the adapter and lark-oapi call: the tenant token, bot info, scopes, message reply /
create / patch, CardKit create / element content / settings / update, the long-connection
endpoint and the WebSocket that carries protobuf `pbbp2.Frame`s, and documents (`docs`: wiki
nodes, docx blocks, drive files, permissions — `tests.fakes.feishu_docs`). Point the SDK at `fake.url`
(`lark.Client.builder().domain(fake.url)`). `push_event()` sends an event over the socket;
`fail()` makes matching calls answer with an error code. `feishu_events` builds real event payloads
and encrypts and signs them with Feishu's algorithms.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web
from lark_oapi.ws.pb.pbbp2_pb2 import Frame

from tests.fakes.feishu_docs import Docs
from tests.fakes.threaded import ThreadedServer

APP_ID = "cli_fake_app"
APP_SECRET = "fake-secret"
BOT_OPEN_ID = "ou_bot_0001"
TENANT = "tenant_fake"
RATE_LIMITED = 99991400  # "too many requests" (HTTP 429)
BODY = web.RequestKey("body", dict)
ALL_SCOPES = (
    "im:message",
    "im:message.group_at_msg:readonly",
    "im:message.p2p_msg:readonly",
    "cardkit:card:write",
    "contact:user.base:readonly",
    "im:chat:readonly",
)


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    body: dict[str, Any]
    at: float = field(default_factory=time.monotonic)

    @property
    def content(self) -> Any:
        """The `content` field decoded (messages carry it as a JSON string)."""
        raw = self.body.get("content")
        return json.loads(raw) if isinstance(raw, str) and raw[:1] in "{[" else raw


@dataclass
class _Failure:
    method: str
    pattern: re.Pattern[str]
    code: int
    times: int | None


class FakeFeishu(ThreadedServer):
    label = "fake Feishu"

    def __init__(self, app_secret: str = APP_SECRET, ping_interval: int = 1) -> None:
        # lark caches tenant tokens per app_id for the whole process: a fresh app per fake
        self.app_id = f"cli_{uuid.uuid4().hex[:16]}"
        self.app_secret = app_secret
        self.ping_interval = ping_interval
        self.scopes: set[str] = set(ALL_SCOPES)
        self.docs = Docs()  # wiki, docx, drive and permissions (tests.fakes.feishu_docs)
        self.silent = False  # True: the socket stops answering pings (a stalled connection)
        self.port = 0
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)  # notified on every call, ack, socket
        self._calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._tokens: set[str] = set()
        self._uuids: dict[str, str] = {}
        self._sequences: dict[str, int] = {}
        self._acks: list[dict[str, Any]] = []
        self._sockets: list[web.WebSocketResponse] = []
        self.connections = 0
        # message resources: (message id, key) -> (bytes, "image" | "file")
        self.resources: dict[tuple[str, str], tuple[bytes, str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    # -- control, from any thread ---------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        rx = re.compile(pattern)
        return [c for c in self.calls if c.method == method and rx.fullmatch(c.path)]

    @property
    def acks(self) -> list[dict[str, Any]]:
        """Responses the client sent for pushed frames: {message_id, code, data}."""
        with self._lock:
            return list(self._acks)

    def wait_for(self, condition: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until `condition()` holds (re-checked whenever the fake records something)."""
        with self._changed:
            if not self._changed.wait_for(condition, timeout):
                raise TimeoutError("the fake Feishu did not see it happen in time")

    def fail(self, method: str, pattern: str, code: int = 230020, times: int | None = None) -> None:
        """Answer calls matching METHOD and path regex with `code` (`times` times, or always)."""
        with self._lock:
            self._failures.append(_Failure(method, re.compile(pattern), code, times))

    def push_event(self, payload: dict[str, Any] | bytes) -> str:
        """Send `payload` (JSON-encoded unless bytes already) as an event data frame on the
        newest socket; returns the frame id."""
        frame_id = uuid.uuid4().hex
        frame = Frame()
        frame.SeqID, frame.LogID, frame.service, frame.method = 1, 1, 1, 1
        for key, value in (
            ("type", "event"),
            ("message_id", frame_id),
            ("sum", "1"),
            ("seq", "0"),
            ("trace_id", uuid.uuid4().hex),
        ):
            header = frame.headers.add()
            header.key, header.value = key, value
        frame.payload = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.wait_for(lambda: bool(self._sockets), 5)
        with self._lock:
            socket = self._sockets[-1]
        if self._loop is None:
            raise RuntimeError("the fake is not running")
        done = asyncio.run_coroutine_threadsafe(
            socket.send_bytes(frame.SerializeToString()), self._loop
        )
        done.result(5)
        return frame_id

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._record])
        r = app.router
        r.add_post("/open-apis/auth/v3/tenant_access_token/internal", self._token)
        r.add_get("/open-apis/bot/v3/info", self._bot_info)
        r.add_get("/open-apis/application/v6/scopes", self._scopes)
        r.add_get("/open-apis/im/v1/chats/{chat_id}", self._chat)
        r.add_get("/open-apis/contact/v3/users/{user_id}", self._user)
        r.add_post("/open-apis/im/v1/messages/{message_id}/reply", self._reply)
        r.add_get("/open-apis/im/v1/messages/{message_id}/resources/{file_key}", self._resource)
        r.add_post("/open-apis/im/v1/messages", self._create)
        r.add_patch("/open-apis/im/v1/messages/{message_id}", self._ok)
        r.add_post("/open-apis/cardkit/v1/cards", self._create_card)
        r.add_put("/open-apis/cardkit/v1/cards/{card_id}/elements/{element_id}/content", self._seq)
        r.add_patch("/open-apis/cardkit/v1/cards/{card_id}/settings", self._seq)
        r.add_put("/open-apis/cardkit/v1/cards/{card_id}", self._seq)
        r.add_post("/callback/ws/endpoint", self._endpoint)
        r.add_get("/ws", self._socket)
        self.docs.install(r)
        return app

    async def _closing(self) -> None:
        for socket in list(self._sockets):
            await socket.close()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/ws":
            return await handler(request)
        body = await request.json() if request.can_read_body else {}
        request[BODY] = body
        with self._changed:
            self._calls.append(Call(request.method, request.path, dict(request.query), body))
            self._changed.notify_all()
        if request.path.startswith("/open-apis/") and "tenant_access_token" not in request.path:
            token = request.headers.get("Authorization", "").removeprefix("Bearer ")
            with self._lock:
                known = token in self._tokens
            if not known:
                return web.json_response(
                    {"code": 99991663, "msg": "Invalid access token"}, status=401
                )
        code = self._failure(request.method, request.path)
        if code is not None:
            status = 429 if code == RATE_LIMITED else 400
            return web.json_response({"code": code, "msg": "fake failure"}, status=status)
        return await handler(request)

    def _failure(self, method: str, path: str) -> int | None:
        with self._lock:
            for failure in self._failures:
                if failure.method == method and failure.pattern.fullmatch(path):
                    if failure.times is not None:
                        if failure.times <= 0:
                            continue
                        failure.times -= 1
                    return failure.code
        return None

    @staticmethod
    def _body(request: web.Request) -> dict[str, Any]:
        body: dict[str, Any] = request.get(BODY, {})
        return body

    async def _token(self, request: web.Request) -> web.Response:
        body = self._body(request)
        if body.get("app_id") != self.app_id or body.get("app_secret") != self.app_secret:
            return web.json_response({"code": 10014, "msg": "app secret invalid"})
        token = f"t-{uuid.uuid4().hex}"
        with self._lock:
            self._tokens.add(token)
        return web.json_response(
            {"code": 0, "msg": "ok", "tenant_access_token": token, "expire": 7200}
        )

    async def _bot_info(self, request: web.Request) -> web.Response:
        bot = {
            "activate_status": 2,
            "app_name": "teambot",
            "open_id": BOT_OPEN_ID,
            "ip_white_list": [],
        }
        return web.json_response({"code": 0, "msg": "ok", "bot": bot})

    async def _chat(self, request: web.Request) -> web.Response:
        chat = request.match_info["chat_id"]
        data = {"name": f"IT 支持群 {chat[-4:]}", "chat_mode": "group"}
        return web.json_response({"code": 0, "msg": "ok", "data": data})

    async def _user(self, request: web.Request) -> web.Response:
        if request.query.get("user_id_type") != "open_id":
            return web.json_response({"code": 99991672, "msg": "bad user_id_type"})
        user = {"open_id": request.match_info["user_id"], "name": "张三"}
        return web.json_response({"code": 0, "msg": "ok", "data": {"user": user}})

    async def _scopes(self, request: web.Request) -> web.Response:
        scopes = [
            {"scope_name": s, "grant_status": 1, "scope_type": "tenant"}
            for s in sorted(self.scopes)
        ]
        return web.json_response({"code": 0, "msg": "ok", "data": {"scopes": scopes}})

    def add_resource(self, message_id: str, key: str, data: bytes, kind: str = "image") -> None:
        """An image or file the resource endpoint serves for that message."""
        with self._lock:
            self.resources[(message_id, key)] = (data, kind)

    async def _resource(self, request: web.Request) -> web.StreamResponse:
        """GET im/v1/messages/:message_id/resources/:file_key?type=image|file: the bytes, or
        the codes Feishu answers with (234001 bad type, 234003 not in this message)."""
        key = (request.match_info["message_id"], request.match_info["file_key"])
        with self._lock:
            found = self.resources.get(key)
        if found is None:
            return web.json_response({"code": 234003, "msg": "File not in msg."}, status=400)
        data, kind = found
        if request.query.get("type") != kind:
            return web.json_response({"code": 234001, "msg": "Invalid request param."}, status=400)
        disposition = f'attachment; filename="{key[1]}"'
        return web.Response(
            body=data,
            content_type="application/octet-stream",
            headers={"Content-Disposition": disposition},
        )

    def _message_id(self, idempotency: str | None) -> str:
        with self._lock:
            if idempotency and idempotency in self._uuids:
                return self._uuids[idempotency]
            message_id = f"om_{uuid.uuid4().hex}"
            if idempotency:
                self._uuids[idempotency] = message_id
            return message_id

    async def _reply(self, request: web.Request) -> web.Response:
        body = self._body(request)
        message_id = self._message_id(body.get("uuid"))
        data = {
            "message_id": message_id,
            "root_id": request.match_info["message_id"],
            "msg_type": body.get("msg_type"),
        }
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _create(self, request: web.Request) -> web.Response:
        body = self._body(request)
        data = {"message_id": self._message_id(body.get("uuid")), "chat_id": body.get("receive_id")}
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _ok(self, request: web.Request) -> web.Response:
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _create_card(self, request: web.Request) -> web.Response:
        return web.json_response(
            {"code": 0, "msg": "success", "data": {"card_id": f"c_{uuid.uuid4().hex[:16]}"}}
        )

    async def _seq(self, request: web.Request) -> web.Response:
        """CardKit calls carry a sequence that must grow per card (300317 otherwise)."""
        card_id = request.match_info["card_id"]
        sequence = int(self._body(request).get("sequence", 0))
        with self._lock:
            last = self._sequences.get(card_id, 0)
            if sequence <= last:
                return web.json_response({"code": 300317, "msg": "sequence number compare failed"})
            self._sequences[card_id] = sequence
        return web.json_response({"code": 0, "msg": "success", "data": {}})

    async def _endpoint(self, request: web.Request) -> web.Response:
        body = self._body(request)
        if body.get("AppID") != self.app_id or body.get("AppSecret") != self.app_secret:
            return web.json_response({"code": 1000040345, "msg": "invalid app credentials"})
        url = f"ws://127.0.0.1:{self.port}/ws?device_id=dev1&service_id=1"
        config = {
            "ReconnectCount": -1,
            "ReconnectInterval": 1,
            "ReconnectNonce": 0,
            "PingInterval": self.ping_interval,
        }
        return web.json_response(
            {"code": 0, "msg": "ok", "data": {"URL": url, "ClientConfig": config}}
        )

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        socket = web.WebSocketResponse()
        await socket.prepare(request)
        with self._changed:
            self._sockets.append(socket)
            self.connections += 1
            self._changed.notify_all()
        try:
            async for message in socket:
                if message.type != WSMsgType.BINARY:
                    continue
                frame = Frame()
                frame.ParseFromString(message.data)
                headers = {h.key: h.value for h in frame.headers}
                if frame.method == 0 and headers.get("type") == "ping":
                    if not self.silent:
                        frame.headers[0].value = "pong"
                        await socket.send_bytes(frame.SerializeToString())
                elif frame.method == 1:
                    answer = json.loads(frame.payload or b"{}")
                    data = base64.b64decode(answer["data"]).decode() if answer.get("data") else None
                    with self._changed:
                        self._changed.notify_all()
                        self._acks.append(
                            {
                                "message_id": headers.get("message_id"),
                                "code": answer.get("code"),
                                "data": data,
                            }
                        )
        finally:
            with self._changed:
                self._changed.notify_all()
                if socket in self._sockets:
                    self._sockets.remove(socket)
        return socket
