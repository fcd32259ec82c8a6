"""A fake SGLang server speaking the real OpenAI-compatible protocol over real HTTP.

In tests: `with FakeSGLang() as fake:` (or the `fake_sglang` fixture) runs it on 127.0.0.1 with an
ephemeral port in a background thread with its own event loop; `fake.behave(...)` changes what it
does, thread-safely. By hand: `python -m tests.fakes.sglang --port 30000 --reasoning inline`.

Reasoning modes (what SGLang + model produce):
- separate: `--reasoning-parser deepseek-r1`: `reasoning_content` deltas, then `content`. With
  `separate_reasoning: false` a request gets the raw text: open_ended (R1 templates open <think>).
- inline: no parser, the model writes `<think>…</think>answer` into content.
- open_ended: no parser, the template opened <think>: content is `reasoning</think>answer`.
- none: a model that does not think.

Flavours: `sglang` answers `/get_model_info`, `/model_info`, `/get_server_info`, `/server_info`
(context length, `reasoning_parser`, `max_running_requests`) and reports `max_model_len` at
`/v1/models`; `llamacpp` answers `/props` (`default_generation_settings.n_ctx`, `total_slots`,
`chat_template`) and reports `meta.n_ctx` at `/v1/models`. Both offer `POST /tokenize`.

Tokens: a whitespace word is one token, a CJK character two (real BPE tokenizers spend ~1-2 on
one), so the prompt and `/tokenize` agree. Answers stream one word (or `chunk_chars`
characters) per chunk. The prompt is `<|role|>` plus the tokens of each message. A prompt of
`context` tokens or more is refused with HTTP 400 (llama.cpp's `exceed_context_size_error`
shape, or SGLang's); generation stops with `finish_reason: "length"` at `max_tokens` or when the
context is full. `cached_tokens` is the longest common token prefix with any earlier request's
prompt-plus-answer (at most prompt_tokens - 1, as SGLang recomputes the last token), like
RadixAttention, which keeps a finished request's output in its tree too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

Reasoning = Literal["separate", "inline", "open_ended", "none"]
Flavour = Literal["sglang", "llamacpp"]
DEFAULT_MODEL = "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B"
DEFAULT_REASONING = "The user asks a question. Let me look at the passages and answer briefly."


@dataclass(frozen=True)
class Behaviour:
    reasoning: Reasoning = "separate"
    model: str = DEFAULT_MODEL
    latency: float = 0.0  # seconds before the first token
    token_delay: float = 0.0  # seconds between chunks
    fail_status: int | None = None  # answer chat requests with this HTTP status …
    fail_times: int | None = None  # … this many times (None: until changed)
    hang_before_first: bool = False
    hang_after_tokens: int | None = None  # stall forever after N content chunks
    cut_after_tokens: int | None = None  # abort the TCP connection after N content chunks
    cache_report: bool = True  # --enable-cache-report
    answer: str | None = None  # None: a deterministic echo of the question
    reasoning_text: str = DEFAULT_REASONING
    chunk_chars: int | None = None  # stream N characters per chunk instead of one word
    healthy: bool = True
    api_key: str | None = None  # --api-key
    flavour: Flavour = "sglang"
    context: int = 32768  # tokens the server holds for one request (--context-length / -c)
    slots: int = 4  # llama.cpp --parallel (total_slots); SGLang max_running_requests = 4 * slots
    tokenize: bool = True  # POST /tokenize answers
    report_context: bool = True  # False: the context size is in no answer (only in a refusal)
    error_after_tokens: int | None = None  # send an error chunk after N content chunks
    error_message: str = "Context size has been exceeded."
    # answer non-streaming chat requests with a body that is no chat completion (200 OK): a
    # proxy's HTML page, an SSE stream, JSON cut short, or JSON of another shape
    odd_reply: Literal["html", "sse", "broken_json", "wrong_json"] | None = None
    odd_models: bool = False  # … and /v1/models too (a proxy in front of everything)


def default_answer(messages: list[dict[str, Any]]) -> str:
    """Echo the question (a `Question:` line, else the last line); cite [1] when given numbered
    passages or web results.
    A follow-up rewrite request ("… Standalone question:") gets "follow-up (earlier question)"."""
    users = [str(m.get("content") or "") for m in messages if m.get("role") == "user"]
    lines = users[-1].strip().splitlines() if users and users[-1].strip() else [""]
    if lines[-1] == "Standalone question:":  # a follow-up rewrite: join it to what came before
        earlier = [
            x.removeprefix("Earlier question:").strip()
            for x in lines
            if x.startswith("Earlier question:")
        ]
        follow = [x.removeprefix("Follow-up:").strip() for x in lines if x.startswith("Follow-up:")]
        return f"{follow[-1] if follow else ''} ({earlier[-1] if earlier else ''})"
    asked = [
        line.removeprefix("Question:").strip() for line in lines if line.startswith("Question:")
    ]
    question = asked[-1] if asked else lines[-1]
    text = f'I saw your question "{question}".'
    given = ("[1]", '<web_result number="1"')  # numbered passages or web results
    if any(g in str(m.get("content") or "") for m in messages for g in given):
        text += " The knowledge base answers it [1]."
    return text


def _odd(kind: str) -> web.Response:
    """A 200 whose body is not a chat completion."""
    if kind == "html":
        page = "<html><body><h1>502 Bad Gateway</h1><p>nginx</p></body></html>"
        return web.Response(text=page, content_type="text/html")
    if kind == "sse":
        event = 'data: {"choices": [{"delta": {"content": "OK"}}]}\n\ndata: [DONE]\n\n'
        return web.Response(text=event, content_type="text/event-stream")
    if kind == "broken_json":
        return web.Response(text='{"id": "x", "choices": [', content_type="application/json")
    return web.json_response({"status": "ok", "result": ["not", "a", "completion"]})


def _choice(**fields: Any) -> dict[str, Any]:
    return {"index": 0, **fields, "logprobs": None, "matched_stop": None}


_TOKEN = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]|[^\s\u3400-\u9fff\uf900-\ufaff]+")


def tokenize(text: str) -> list[str]:
    """The fake tokenizer: a word is one token, a CJK character two."""
    tokens: list[str] = []
    for match in _TOKEN.finditer(text):
        piece = match.group()
        tokens.extend((piece, "\u0300") if len(piece) == 1 and piece >= "\u3400" else (piece,))
    return tokens


def prompt_tokens_of(messages: list[dict[str, Any]]) -> list[str]:
    return [
        t
        for m in messages
        for t in [f"<|{m.get('role')}|>", *tokenize(str(m.get("content") or ""))]
    ]


def split_tokens(text: str, chunk_chars: int | None) -> list[str]:
    if chunk_chars:
        return [text[i : i + chunk_chars] for i in range(0, len(text), chunk_chars)]
    return re.findall(r"\s*\S+", text) or ([text] if text else [])


class FakeSGLang(ThreadedServer):
    label = "fake SGLang"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **behaviour: Any):
        self.host, self.port = host, port
        self._behaviour = Behaviour(**behaviour)
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        # monotonic times per request, for benchmarks: (received, last token sent or None)
        self.timings: list[list[float | None]] = []
        self._index_of: dict[int, int] = {}
        self._hits: list[str] = []
        self._prompts: list[list[str]] = []
        self.in_flight = self.max_in_flight = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    # -- control, from any thread ------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def behaviour(self) -> Behaviour:
        with self._lock:
            return self._behaviour

    def behave(self, **changes: Any) -> None:
        known = {f.name for f in fields(Behaviour)}
        if unknown := set(changes) - known:
            raise TypeError(f"unknown behaviour {sorted(unknown)}; known: {sorted(known)}")
        with self._lock:
            self._behaviour = replace(self._behaviour, **changes)

    def reset(self) -> None:
        """Default behaviour, empty records and cache."""
        with self._lock:
            self._behaviour = Behaviour()
            self._requests.clear()
            self.timings.clear()
            self._hits.clear()
            self._prompts.clear()
            self.in_flight = self.max_in_flight = 0

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Bodies of the chat completion requests received, oldest first."""
        with self._lock:
            return list(self._requests)

    @property
    def hits(self) -> list[str]:
        """Every request as "METHOD /path"."""
        with self._lock:
            return list(self._hits)

    def _application(self) -> web.Application:
        app = web.Application(middlewares=[self._auth])
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/model_info", self._model_info)
        app.router.add_get("/get_model_info", self._model_info)
        app.router.add_get("/server_info", self._server_info)
        app.router.add_get("/get_server_info", self._server_info)
        app.router.add_get("/props", self._props)
        app.router.add_post("/tokenize", self._tokenize)
        return app

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        with self._lock:
            self._hits.append(f"{request.method} {request.path}")
        key = self.behaviour.api_key
        if (
            key
            and request.path != "/health"
            and request.headers.get("Authorization") != f"Bearer {key}"
        ):
            return web.json_response({"error": "Unauthorized"}, status=401)
        response: web.StreamResponse = await handler(request)
        return response

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if self.behaviour.healthy else 503)

    async def _models(self, request: web.Request) -> web.Response:
        b = self.behaviour
        if b.odd_models and b.odd_reply is not None:
            return _odd(b.odd_reply)
        card: dict[str, Any] = dict(id=b.model, object="model", created=int(time.time()))
        if b.flavour == "llamacpp":
            card.update(owned_by="llamacpp", meta={"n_ctx_train": 8192, "n_ctx": b.context})
        else:
            card.update(owned_by="sglang", root=b.model, max_model_len=b.context)
        if not b.report_context:
            card.pop("max_model_len", None)
            card.pop("meta", None)
        return web.json_response({"object": "list", "data": [card]})

    async def _server_info(self, request: web.Request) -> web.Response:
        b = self.behaviour
        if b.flavour != "sglang":
            raise web.HTTPNotFound()
        parser = "deepseek-r1" if b.reasoning == "separate" else None
        context = b.context if b.report_context else None
        info = dict(model_path=b.model, context_length=context, reasoning_parser=parser)
        info.update(max_running_requests=4 * b.slots, version="0.5.23")
        info["internal_states"] = [{"max_total_num_tokens": 8 * b.context}]
        return web.json_response(info)

    async def _props(self, request: web.Request) -> web.Response:
        b = self.behaviour
        if b.flavour != "llamacpp":
            raise web.HTTPNotFound()
        opens = "<think>\n" if b.reasoning == "open_ended" else ""
        template = (
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}"
            f"{{% if add_generation_prompt %}}<|assistant|>{opens}{{% endif %}}"
        )
        settings = {"n_ctx": b.context if b.report_context else None, "params": {}}
        return web.json_response(
            dict(default_generation_settings=settings, total_slots=b.slots, model_path=b.model)
            | dict(chat_template=template, build_info="fake")
        )

    async def _tokenize(self, request: web.Request) -> web.Response:
        """llama.cpp reads `content` and answers `tokens`; SGLang reads `prompt`, adds `count`."""
        b = self.behaviour
        if not b.tokenize:
            raise web.HTTPNotFound()
        body = await request.json()
        text = body.get("content", body.get("prompt", ""))
        ids = [hash(t) % 50_000 for t in tokenize(str(text))]
        if b.flavour == "llamacpp":
            return web.json_response({"tokens": ids})
        return web.json_response({"tokens": ids, "count": len(ids), "max_model_len": b.context})

    async def _model_info(self, request: web.Request) -> web.Response:
        b = self.behaviour
        if b.flavour != "sglang":
            raise web.HTTPNotFound()
        parser = "deepseek-r1" if b.reasoning == "separate" else None
        info = dict(model_path=b.model, tokenizer_path=b.model, is_generation=True)
        info.update(preferred_sampling_params=None, weight_version="default")
        return web.json_response({**info, "reasoning_parser": parser, "tool_call_parser": None})

    def _account(self, body: dict[str, Any]) -> tuple[list[str], int]:
        """Record the request; (prompt tokens, cached_tokens) from the simulated radix cache."""
        tokens = prompt_tokens_of(body.get("messages", []))
        cached = 0
        with self._lock:
            self._requests.append(body)
            self.timings.append([time.monotonic(), None])
            self._index_of[id(body)] = len(self._requests) - 1
            for earlier in self._prompts:
                n = 0
                for a, b in zip(earlier, tokens, strict=False):
                    if a != b:
                        break
                    n += 1
                cached = max(cached, n)
            self._prompts.append(tokens)
        return tokens, min(cached, max(len(tokens) - 1, 0))

    def _remember_answer(self, prompt: list[str], answer: str) -> None:
        """A finished request's output joins the cache, as in RadixAttention."""
        with self._lock:
            self._prompts.append([*prompt, "<|assistant|>", *tokenize(answer)])

    @staticmethod
    def _too_long(b: Behaviour, prompt_tokens: int) -> web.Response:
        if b.flavour == "llamacpp":
            message = (
                f"request ({prompt_tokens} tokens) exceeds the available context size "
                f"({b.context} tokens), try increasing it"
            )
            error = dict(code=400, message=message, type="exceed_context_size_error")
            error.update(n_prompt_tokens=prompt_tokens, n_ctx=b.context)
            return web.json_response({"error": error}, status=400)
        message = (
            f"The input ({prompt_tokens} tokens) is longer than the model's context length "
            f"({b.context} tokens)."
        )
        body = dict(object="error", message=message, type="BadRequestError", param=None, code=400)
        return web.json_response(body, status=400)

    def _fail_now(self) -> int | None:
        with self._lock:
            b = self._behaviour
            if b.fail_status is None:
                return None
            if b.fail_times is not None:
                left = b.fail_times - 1
                self._behaviour = replace(
                    b, fail_times=left or None, fail_status=b.fail_status if left else None
                )
            return b.fail_status

    async def _hang(self, request: web.Request) -> None:
        """Stall until the server stops, then drop the connection."""
        assert self._stop is not None
        await self._stop.wait()
        self._abort(request)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body: dict[str, Any] = await request.json()
        prompt, cached = self._account(body)
        prompt_tokens = len(prompt)
        b = self.behaviour
        if prompt_tokens >= b.context:
            return self._too_long(b, prompt_tokens)
        if (status := self._fail_now()) is not None:
            error: dict[str, Any] = dict(
                object="error", message=f"simulated HTTP {status}", param=None
            )
            error.update(type="InternalServerError", code=status)
            return web.json_response(error, status=status)
        if b.odd_reply is not None and not body.get("stream"):
            return _odd(b.odd_reply)
        answer = b.answer if b.answer is not None else default_answer(body.get("messages", []))
        mode = b.reasoning
        if mode == "separate" and body.get("separate_reasoning") is False:
            mode = "open_ended"
        raw = {
            "separate": f"\n\n{answer}",
            "inline": f"<think>\n{b.reasoning_text}\n</think>\n\n{answer}",
            "open_ended": f"{b.reasoning_text}\n</think>\n\n{answer}",
        }.get(mode, answer)
        thinking = split_tokens(b.reasoning_text, b.chunk_chars) if mode == "separate" else []
        pieces = [("reasoning_content", t) for t in thinking]  # (delta field, text)
        pieces += [("content", t) for t in split_tokens(raw, b.chunk_chars)]
        max_tokens = body.get("max_tokens") or body.get("max_completion_tokens")
        room = b.context - prompt_tokens
        limit = room if max_tokens is None else min(int(max_tokens), room)
        finish = "stop"
        if len(pieces) > limit:
            pieces, finish = pieces[:limit], "length"
        self._remember_answer(prompt, "".join(t for f, t in pieces if f == "content"))
        details = {"cached_tokens": cached} if b.cache_report else None
        usage: dict[str, Any] = dict(prompt_tokens=prompt_tokens, completion_tokens=len(pieces))
        usage.update(total_tokens=prompt_tokens + len(pieces), prompt_tokens_details=details)
        head = dict(id=uuid.uuid4().hex, created=int(time.time()), model=b.model)
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if body.get("stream"):
                return await self._stream(request, body, b, pieces, finish, usage, head)
            await asyncio.sleep(b.latency + b.token_delay * len(pieces))
            if b.hang_before_first:
                await self._hang(request)
                return web.Response(status=503)
            reasoning = "".join(t for f, t in pieces if f == "reasoning_content")
            content = "".join(t for f, t in pieces if f == "content")
            message = dict(role="assistant", content=content or None, tool_calls=None)
            message["reasoning_content"] = reasoning or None
            choice = _choice(message=message, finish_reason=finish)
            completion = {**head, "object": "chat.completion", "choices": [choice]}
            return web.json_response({**completion, "usage": usage})
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        b: Behaviour,
        pieces: list[tuple[str, str]],
        finish: str,
        usage: dict[str, Any],
        head: dict[str, Any],
    ) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)

        async def send(delta: dict[str, Any] | None, finish_reason: str | None = None) -> None:
            if delta is not None and "error" in delta:  # llama.cpp: an error event, then the end
                await resp.write(f"data: {json.dumps(delta)}\n\n".encode())
                return
            choices = [] if delta is None else [_choice(delta=delta, finish_reason=finish_reason)]
            chunk = {**head, "object": "chat.completion.chunk", "choices": choices}
            chunk["usage"] = usage if delta is None else None
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())

        try:
            ended = await self._emit(request, b, pieces, send)
            if request.transport is None or request.transport.is_closing():
                return resp
            if ended == "error":
                await resp.write_eof()
                return resp
            with self._lock:
                self.timings[self._index_of[id(body)]][1] = time.monotonic()
            await send({}, finish)
            if (body.get("stream_options") or {}).get("include_usage"):
                await send(None)
            await resp.write(b"data: [DONE]\n\n")
            await resp.write_eof()
        except ConnectionError:
            pass  # the client went away (a timeout on its side)
        return resp

    async def _emit(
        self, request: web.Request, b: Behaviour, pieces: list[tuple[str, str]], send: Any
    ) -> str | None:
        await asyncio.sleep(b.latency)
        if b.hang_before_first:
            await self._hang(request)
            return None
        await send({"role": "assistant", "content": ""})
        sent = 0
        for field, text in pieces:
            if field == "content":
                if b.error_after_tokens is not None and sent >= b.error_after_tokens:
                    error = dict(code=500, message=b.error_message, type="server_error")
                    await send({"error": error})
                    return "error"
                if b.hang_after_tokens is not None and sent >= b.hang_after_tokens:
                    await self._hang(request)
                    return None
                if b.cut_after_tokens is not None and sent >= b.cut_after_tokens:
                    await asyncio.sleep(0.05)  # let the client read what was sent
                    self._abort(request)
                    return None
                sent += 1
            await send({field: text})
            if b.token_delay:
                await asyncio.sleep(b.token_delay)
        return None

    @staticmethod
    def _abort(request: web.Request) -> None:
        if request.transport is not None:
            request.transport.abort()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the fake SGLang server.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=30000)
    modes = ["separate", "inline", "open-ended", "open_ended", "none"]
    parser.add_argument("--reasoning", default="separate", choices=modes)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--api-key", default=None)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--token-delay", type=float, default=0.02)
    args = parser.parse_args(argv)
    knobs = dict(model=args.model, api_key=args.api_key, latency=args.latency)
    knobs.update(reasoning=args.reasoning.replace("-", "_"), token_delay=args.token_delay)
    with FakeSGLang(args.host, args.port, **knobs) as fake:
        print(f"fake SGLang serving {fake.behaviour.model} at {fake.base_url}", flush=True)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
