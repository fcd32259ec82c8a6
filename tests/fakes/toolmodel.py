"""A fake OpenAI-compatible server that parses tool calls (SGLang with --tool-call-parser).

Only what the web lookup's auto mode uses: /model_info (reports `tool_call_parser`),
/v1/models, and non-streaming /v1/chat/completions answering with a `web_search` tool call
when `call_query` is set, else a plain "NO".
"""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from typing import Any

from aiohttp import web


class FakeToolModel:
    def __init__(self, *, parser: str | None = "qwen25", call_query: str | None = None) -> None:
        self.parser = parser
        self.call_query = call_query
        self.fail_status: int | None = None
        self.delay = 0.0  # seconds each chat answer takes
        self.paths: list[str] = []  # every request, in order
        self.in_flight = 0
        self.most_in_flight = 0  # chat requests answered at the same time, at most
        self.port = 0
        self.requests: list[dict[str, Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> FakeToolModel:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("fake tool model did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stop = asyncio.Event()
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/model_info", self._info)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._chat)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.port = runner.addresses[0][1]
        ready.set()
        await self._stop.wait()
        await runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.paths.append(request.path)
        response: web.StreamResponse = await handler(request)
        return response

    async def _info(self, request: web.Request) -> web.Response:
        return web.json_response({"model_path": "qwen", "tool_call_parser": self.parser})

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "qwen", "object": "model"}]})

    async def _chat(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append(body)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight -= 1
        if self.fail_status is not None:
            return web.json_response({"error": "simulated"}, status=self.fail_status)
        message: dict[str, Any] = {"role": "assistant", "content": "NO", "tool_calls": None}
        if self.call_query is not None and body.get("tools"):
            arguments = json.dumps({"query": self.call_query})
            call = {"id": uuid.uuid4().hex, "type": "function"}
            call["function"] = {"name": "web_search", "arguments": arguments}
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        choice = {"index": 0, "message": message, "finish_reason": finish}
        return web.json_response({"id": "x", "object": "chat.completion", "choices": [choice]})
