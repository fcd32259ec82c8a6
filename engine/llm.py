"""The SGLang (or any OpenAI-compatible) client: streaming chat with the model's thinking split
off, timeouts, retries before the first token only, bounded concurrency and a circuit breaker.

Only server faults feed the breaker (cannot connect, 5xx, a stall, a cut connection, an error
chunk); an answer cut by `max_tokens` or by teambot's own `total_timeout`, or a prompt larger
than the context, is the request's doing and does not. A completed stream resets the count."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import httpx
import openai
from httpx_sse import EventSource, SSEError
from openai import AsyncOpenAI
from openai.types.completion_usage import CompletionUsage
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from engine.breaker import Breaker
from engine.budget import Budget, TokenCounter
from engine.config import LLMSettings
from engine.messages import Usage
from engine.server_info import ServerInfo, count_tokens, discover
from engine.think import CLOSE, OPEN, ThinkSplitter

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_CONTEXT = 8192  # when neither the server nor [llm] context_size says
DEFAULT_CONCURRENCY = 8  # when neither the server nor [llm] max_concurrency says
# How servers word "the prompt is larger than the context" (llama.cpp, SGLang, vLLM, OpenAI).
_CONTEXT_ERROR = re.compile(
    r"(?i)exceed_context_size|context (size|length|window)|maximum context|context_length"
)
_N_CTX = re.compile(r"(?i)context (?:size|length)[^0-9]{0,20}\(?(\d+)")


class LLMError(Exception):
    """The model server gave no usable answer. `after_output`: some deltas were already yielded."""

    def __init__(self, message: str, *, after_output: bool = False, retryable: bool = False):
        super().__init__(message)
        self.after_output = after_output
        self.retryable = retryable


class LLMUnavailable(LLMError):
    """Cannot connect, 5xx, auth refused, or breaker open; always raised before any output."""


class LLMTimeout(LLMError):
    """No first token within first_token_timeout, a gap over idle_timeout, or total_timeout
    (`which` names the limit)."""

    def __init__(self, message: str, *, which: str, after_output: bool = False):
        super().__init__(message, after_output=after_output)
        self.which = which

    @property
    def own_limit(self) -> bool:
        """teambot's total_timeout ended an answer that was still streaming: not a server fault."""
        return self.which == "total_timeout" and self.after_output


class LLMContextExceeded(LLMError):
    """The server refused the prompt as larger than its context (`n_ctx` when it said)."""

    def __init__(self, message: str, *, n_ctx: int | None = None, prompt_tokens: int | None = None):
        super().__init__(message)
        self.n_ctx, self.prompt_tokens = n_ctx, prompt_tokens


class LLMServerError(LLMError):
    """The server sent an error chunk in the middle of the answer."""

    def __init__(self, message: str, *, detail: str, after_output: bool):
        super().__init__(message, after_output=after_output)
        self.detail = detail

    @property
    def context(self) -> bool:
        """The shared context ran out (too many answers at once): capacity, not a dead server."""
        return bool(_CONTEXT_ERROR.search(self.detail))


class LLMStreamBroken(LLMError):
    """The connection ended after output had started (never retried)."""


class LLMEmptyAnswer(LLMError):
    """The model produced no answer text, e.g. max_tokens ran out inside <think>."""

    def __init__(
        self,
        message: str,
        *,
        reasoning: str = "",
        usage: Usage | None = None,
        finish_reason: str | None = None,
    ):
        super().__init__(message, after_output=bool(reasoning))
        self.reasoning, self.usage, self.finish_reason = reasoning, usage, finish_reason


@dataclass(frozen=True)
class Delta:
    """A piece of a streamed answer. The last one carries usage and finish_reason."""

    content: str = ""
    reasoning: str = ""
    usage: Usage | None = None
    finish_reason: str | None = None


@dataclass(frozen=True)
class ServerReport:
    """What `teambot doctor` shows about the model server."""

    base_url: str
    reachable: bool
    models: tuple[str, ...] = ()
    model: str = ""
    model_served: bool = True  # the configured model is among those the server lists
    health_ok: bool | None = None
    reasoning_parser: str | None = None
    kind: str = "openai"
    context: int | None = None  # what the server reported
    slots: int | None = None
    reasoning: str = ""  # how teambot treats the model's thinking, and why
    reasoning_separated: bool | None = None  # None: could not tell (model did not think)
    latency: float | None = None  # seconds for a tiny chat completion
    error: str = ""


Chunk = Mapping[str, Any]  # one decoded `chat.completion.chunk` of the stream


class _ServerError(Exception):
    """The server sent an error event, a chunk that is not JSON, or a wrong content type."""


class _ErrorEvent(_ServerError):
    """An `{"error": …}` chunk: the server's own report of a failure."""

    def __init__(self, detail: str):
        super().__init__(f"error event: {detail}")
        self.detail = detail


class _Slots:
    """A semaphore whose size can change: the bound follows the server once it says."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy = 0
        self._free = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._free:
            await self._free.wait_for(lambda: self._busy < self.limit)
            self._busy += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._free:
            self._busy -= 1
            self._free.notify_all()


@dataclass
class _Opened:
    response: httpx.Response
    chunks: AsyncGenerator[Chunk, None]
    first: list[Chunk]
    model: str

    async def close(self) -> None:
        await self.chunks.aclose()
        await self.response.aclose()


class LLMClient:
    """Talks to one OpenAI-compatible server. Share one instance; `await close()` at shutdown."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        open_think: bool | None = None,
    ):
        """open_think forces the ThinkSplitter hold rule; None: [llm] reasoning, else what the
        server says (SGLang's reasoning parser, llama.cpp's chat template)."""
        self.settings = settings
        self.base_url = settings.base_url.rstrip("/")
        self.root_url = self.base_url.removesuffix("/v1")
        self._own_http = http_client is None
        timeout = httpx.Timeout(settings.total_timeout, connect=settings.connect_timeout)
        pool = (settings.max_concurrency or 64) + 4  # the probe and lookups beside the chats
        limits = httpx.Limits(max_connections=pool, max_keepalive_connections=pool)
        self._http = http_client or httpx.AsyncClient(timeout=timeout, limits=limits)
        key = settings.api_key.get_secret_value() if settings.api_key else None
        self._headers = {"Authorization": f"Bearer {key}"} if key else {}
        # openai 1.x runs on httpx; 3.x on httpx2 but still accepts an httpx client.
        client: Any = self._http
        self._openai = AsyncOpenAI(
            base_url=self.base_url, api_key=key or "EMPTY", max_retries=0, http_client=client
        )
        self._sem = _Slots(settings.max_concurrency or DEFAULT_CONCURRENCY)
        self._breaker = Breaker(settings.breaker_failures, settings.breaker_reset)
        self._model = settings.model
        if open_think is None and settings.reasoning != "auto":
            open_think = settings.reasoning == "opens_think"
        self._open_think = open_think
        self._info: ServerInfo | None = None
        self._info_failed_at: float | None = None
        self._info_lock = asyncio.Lock()
        self._counter = TokenCounter()
        self._learned_context: int | None = None

    async def server_info(self) -> ServerInfo:
        """What the server says about itself, asked once (again after a failure, at most every
        breaker_reset seconds); adapts the concurrency bound and the token counter."""
        if self._info is not None:
            return self._info
        async with self._info_lock:
            failed = self._info_failed_at
            if self._info is not None:
                return self._info
            if failed is not None and time.monotonic() - failed < self.settings.breaker_reset:
                return ServerInfo()
            # bounded as a whole: a server that accepts and never answers must not hold up
            # the first question for every endpoint's timeout in turn
            limit = min(self.settings.connect_timeout + 3, self.settings.first_token_timeout)
            try:
                async with asyncio.timeout(limit):
                    info = await discover(self._http, self.root_url, self._headers, limit)
            except (httpx.HTTPError, TimeoutError) as exc:
                log.info("model server at %s did not describe itself: %r", self.base_url, exc)
                self._info_failed_at = time.monotonic()
                return ServerInfo()
            self._adopt(info)
            return info

    def _adopt(self, info: ServerInfo) -> None:
        self._info = info
        if not self.settings.max_concurrency and info.slots:
            self._sem.limit = info.slots
        if info.tokenize:
            self._counter = TokenCounter(self._count_remote)
        if self._open_think is None and info.opens_think is not None:
            self._open_think = info.opens_think
        log.info(
            "model server %s (%s): context %s, %s at once, tokenizer %s, thinking %s",
            self.base_url, info.kind, info.context or "not reported", self._sem.limit,
            "remote" if info.tokenize else "estimated", self._reasoning_rule(info),
        )  # fmt: skip

    async def _count_remote(self, text: str) -> int:
        return await count_tokens(
            self._http, self.root_url, self._headers, text, self.settings.connect_timeout + 3
        )

    @property
    def counter(self) -> TokenCounter:
        """Counts prompt tokens: the server's tokenizer once it offered one, else an estimate."""
        return self._counter

    @property
    def concurrency(self) -> int:
        return self._sem.limit

    def budget(self) -> Budget:
        """The context (the server's, capped by [llm] context_size) and the answer's share."""
        reported = self._learned_context or (self._info.context if self._info else None)
        configured = self.settings.context_size or None
        context = min(c for c in (reported, configured) if c) if reported or configured else None
        context = context or DEFAULT_CONTEXT
        return Budget(context, min(self.settings.max_tokens, context // 2))

    def _reasoning_rule(self, info: ServerInfo | None) -> str:
        if self.settings.reasoning != "auto":
            return f"{self.settings.reasoning} ([llm] reasoning)"
        if info is not None and info.reasoning_parser:
            return f"separated by the server (reasoning parser {info.reasoning_parser})"
        if info is not None and info.opens_think is not None:
            opens = "opens <think>: answers held until </think>" if info.opens_think else "plain"
            return f"{opens} (the server's chat template)"
        return "plain until the model writes </think> unopened (server did not say)"

    @property
    def breaker_open(self) -> bool:
        return self._breaker.open

    def status(self) -> str:
        """The model server as /readyz and `teambot doctor` say it, from the calls so far."""
        if self._breaker.open:
            return "unavailable (retrieval-only answers until it recovers)"
        if self._breaker.failures:
            return (
                f"failing ({self._breaker.failures} in a row; still asked — retrieval-only "
                f"answers after {self._breaker.limit} in a row)"
            )
        if not self._breaker.answered:
            return "not contacted yet (the first question will tell)"
        return "ok"

    async def close(self) -> None:
        """Close the HTTP client if this client made it (AsyncOpenAI holds nothing else)."""
        if self._own_http:
            await self._http.aclose()

    async def stream_chat(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None
    ) -> AsyncGenerator[Delta, None]:
        """Stream an answer; the last Delta carries usage and finish_reason.

        Before any Delta: LLMUnavailable (connect error, 5xx, 429 are first retried
        max_retries times), LLMTimeout (not retried: a slow server gets no extra load), or a
        plain LLMError for a 4xx request error (LLMContextExceeded for a prompt over the
        context). After output started: LLMTimeout, LLMStreamBroken or LLMServerError (an error
        chunk), never retried. At the end: LLMEmptyAnswer when there was no answer text.
        Timeouts count from when a concurrency slot is free. Stop early with `aclosing`.
        """
        trial = self._admit()
        await self.server_info()
        try:
            async with self._sem, aclosing(self._stream(messages, max_tokens)) as deltas:
                async for delta in deltas:
                    yield delta
        except LLMTimeout as error:
            if not error.own_limit:
                self._breaker.failure()
            raise
        except LLMServerError as error:
            if not error.context:
                self._breaker.failure()
            raise
        except LLMContextExceeded as error:
            if error.n_ctx:
                self._learned_context = error.n_ctx
            raise
        except LLMEmptyAnswer:
            self._breaker.success()  # the server answered; the model spent its tokens thinking
            raise
        except (LLMUnavailable, LLMStreamBroken):
            self._breaker.failure()
            raise
        else:
            self._breaker.success()
        finally:
            if trial:
                self._breaker.trial = False

    async def complete(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None
    ) -> tuple[str, str, Usage]:
        """One non-streaming answer: (content, reasoning, usage). Same errors and think rule."""
        trial = self._admit()
        try:
            async with self._sem:
                try:
                    async with asyncio.timeout(self.settings.total_timeout):
                        result = await self._retrying(
                            lambda: self._complete_once(messages, max_tokens)
                        )
                except TimeoutError:
                    raise LLMTimeout(
                        self._timeout_msg("total_timeout"), which="total_timeout"
                    ) from None
        except (LLMUnavailable, LLMTimeout):
            self._breaker.failure()
            raise
        finally:
            if trial:
                self._breaker.trial = False
        self._breaker.success()
        return result

    async def probe(self) -> ServerReport:
        """Check the server for `teambot doctor`; never raises, bypasses the breaker."""
        report = ServerReport(self.base_url, reachable=False)
        try:
            models = await self._list_models()
        except LLMError as exc:
            return replace(report, error=str(exc))
        model = self.settings.model or (models[0] if models else "")
        served = not self.settings.model or self.settings.model in models
        report = replace(
            report, reachable=True, models=tuple(models), model=model, model_served=served
        )
        try:
            info = await discover(
                self._http, self.root_url, self._headers, self.settings.connect_timeout + 3
            )
            self._adopt(info)
            report = replace(
                report,
                kind=info.kind,
                context=info.context,
                slots=info.slots,
                reasoning_parser=info.reasoning_parser,
                reasoning=self._reasoning_rule(info),
            )
            health = await self._http.get(f"{self.root_url}/health", headers=self._headers)
            report = replace(report, health_ok=health.status_code == 200)
        except (httpx.HTTPError, ValueError, AttributeError):
            pass  # not SGLang, or an older one: the OpenAI API is what matters
        if not served:
            return replace(report, error=f"the server does not serve model {model!r}")
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.settings.first_token_timeout):
                result = await self._openai.chat.completions.create(
                    model=model, max_tokens=64, messages=[{"role": "user", "content": "Say OK."}]
                )
        except (TimeoutError, openai.APIError, httpx.HTTPError) as exc:
            return replace(report, error=f"a test chat request failed: {exc!r}")
        message = result.choices[0].message if result.choices else None
        content = (message.content or "") if message else ""
        separated = True if _reasoning_of(message) else None
        if OPEN in content or CLOSE in content:
            separated = False
        return replace(report, reasoning_separated=separated, latency=time.monotonic() - started)

    # -- internals -------------------------------------------------------------------------------

    def _admit(self) -> bool:
        if not self.settings.enabled:
            raise LLMUnavailable("the model server is disabled ([llm] enabled = false)")
        trial = self._breaker.admit()
        if trial is None:
            raise LLMUnavailable(
                f"the model server at {self.base_url} failed {self._breaker.failures} times in a "
                f"row; not calling it for up to {self.settings.breaker_reset:g}s (circuit breaker "
                f"open). {self._fix()}"
            )
        return trial

    def _fix(self) -> str:
        return (
            "Check that SGLang is running (python -m sglang.launch_server --model-path <model> "
            "--reasoning-parser deepseek-r1 --port 30000) or set TEAMBOT_LLM__BASE_URL "
            f"(now {self.base_url})."
        )

    def _timeout_msg(self, which: str) -> str:
        return (
            f"the model server at {self.base_url} exceeded {which} "
            f"({getattr(self.settings, which):g}s); it may be overloaded. "
            f"Raise TEAMBOT_LLM__{which.upper()} or add capacity."
        )

    def _empty_msg(self, finish: str | None) -> str:
        if finish == "length":
            return (
                f"the model used all max_tokens ({self.settings.max_tokens}) before it "
                "finished thinking; raise TEAMBOT_LLM__MAX_TOKENS."
            )
        return f"the model at {self.base_url} returned an empty answer (finish_reason={finish})."

    def _api_error(self, exc: Exception) -> LLMError:
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc.status_code, str(exc))
        return LLMUnavailable(
            f"cannot reach the model server at {self.base_url} ({exc!r}). {self._fix()}",
            retryable=True,
        )

    def _status_error(self, status: int, exc: str) -> LLMError:
        detail = f"the model server at {self.base_url} answered HTTP {status}"
        if status == 400 and _CONTEXT_ERROR.search(exc):
            n_ctx, prompt = _context_numbers(exc)
            return LLMContextExceeded(
                f"{detail}: the prompt is larger than the model's context ({exc[:300]})",
                n_ctx=n_ctx,
                prompt_tokens=prompt,
            )
        if status in (401, 403):
            return LLMUnavailable(
                f"{detail}: set TEAMBOT_LLM__API_KEY to the key SGLang was started with "
                "(--api-key)."
            )
        if status == 429 or status >= 500:
            return LLMUnavailable(f"{detail} ({exc}). {self._fix()}", retryable=True)
        return LLMError(f"{detail}, rejecting the request: {exc}")

    def _hold(self) -> bool:
        return bool(self._open_think)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=wait_exponential(multiplier=0.1, max=2.0),
            retry=retry_if_exception(lambda e: isinstance(e, LLMError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _list_models(self) -> list[str]:
        try:
            return [m.id async for m in self._openai.models.list()]
        except (openai.APIError, httpx.HTTPError) as exc:
            raise self._api_error(exc) from exc

    async def _model_name(self) -> str:
        if not self._model and self._info is not None and self._info.models:
            self._model = self._info.models[0]
        if not self._model:
            models = await self._list_models()
            if not models:
                raise LLMUnavailable(f"{self.base_url}/models lists no models. {self._fix()}")
            self._model = models[0]
        return self._model

    def _request(
        self, messages: list[dict[str, str]], model: str, max_tokens: int | None = None
    ) -> dict[str, Any]:
        s = self.settings
        return {
            "messages": messages,
            "model": model,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": max_tokens or s.max_tokens,
        }

    async def _open_once(
        self, messages: list[dict[str, str]], total_deadline: float, max_tokens: int | None
    ) -> _Opened:
        """Send the request and read up to the first chunk that carries text (or finishes).

        The stream is read with httpx and httpx-sse rather than openai's stream: building openai's
        pydantic models for every chunk cost more CPU than the rest of the answer together."""
        which, deadline = "first_token_timeout", _now() + self.settings.first_token_timeout
        if deadline > total_deadline:
            which, deadline = "total_timeout", total_deadline
        try:
            async with asyncio.timeout_at(deadline):
                model = await self._model_name()
                body = {
                    **self._request(messages, model, max_tokens),
                    "stream": True,
                    "stream_options": {"include_usage": True},
                }
                request = self._http.build_request(
                    "POST", f"{self.base_url}/chat/completions", json=body, headers=self._headers
                )
                response = await self._http.send(request, stream=True)
                if response.status_code >= 400:
                    await response.aread()
                    await response.aclose()
                    raise self._status_error(response.status_code, response.text)
                opened = _Opened(response, _chunks(response), [], model)
                try:
                    while True:
                        opened.first.append(chunk := await anext(opened.chunks))
                        if _has_text(chunk) or any(c.get("finish_reason") for c in _choices(chunk)):
                            return opened
                except StopAsyncIteration:
                    pass
                except BaseException:
                    await opened.close()
                    raise
                await opened.close()
                raise LLMUnavailable(
                    f"the model server at {self.base_url} ended the stream before the first "
                    f"token. {self._fix()}",
                    retryable=True,
                )
        except TimeoutError:
            raise LLMTimeout(self._timeout_msg(which), which=which) from None
        except (openai.APIError, httpx.HTTPError) as exc:
            raise self._api_error(exc) from exc
        except _ErrorEvent as exc:
            if _CONTEXT_ERROR.search(exc.detail):
                raise self._status_error(400, exc.detail) from exc
            raise LLMUnavailable(
                f"the model server at {self.base_url} failed the request: {exc}. {self._fix()}",
                retryable=True,
            ) from exc
        except _ServerError as exc:
            raise LLMUnavailable(
                f"the model server at {self.base_url} failed the request: {exc}. {self._fix()}",
                retryable=True,
            ) from exc

    async def _stream(
        self, messages: list[dict[str, str]], max_tokens: int | None
    ) -> AsyncGenerator[Delta, None]:
        total_deadline = _now() + self.settings.total_timeout
        opened = await self._retrying(lambda: self._open_once(messages, total_deadline, max_tokens))
        splitter = ThinkSplitter(hold=self._hold())
        usage: Usage | None = None
        finish: str | None = None
        answer, reasoning_all, pending = "", "", list(opened.first)
        try:
            while True:
                if pending:
                    chunk = pending.pop(0)
                else:
                    which, deadline = "idle_timeout", _now() + self.settings.idle_timeout
                    if deadline > total_deadline:
                        which, deadline = "total_timeout", total_deadline
                    started = bool(answer or reasoning_all)
                    try:
                        async with asyncio.timeout_at(deadline):
                            chunk = await anext(opened.chunks)
                    except StopAsyncIteration:
                        break
                    except TimeoutError:
                        raise LLMTimeout(
                            self._timeout_msg(which), which=which, after_output=started
                        ) from None
                    except _ErrorEvent as exc:
                        raise LLMServerError(
                            f"the model server at {self.base_url} reported an error mid-answer: "
                            f"{exc.detail}",
                            detail=exc.detail,
                            after_output=started,
                        ) from exc
                    except (httpx.HTTPError, _ServerError) as exc:
                        raise LLMStreamBroken(
                            f"the model server at {self.base_url} cut the answer off ({exc!r}).",
                            after_output=started,
                        ) from exc
                usage = _usage_of(chunk.get("usage")) or usage
                content = reasoning = ""
                for choice in _choices(chunk)[:1]:
                    delta = choice.get("delta") or {}
                    if separate := _reasoning_in(delta):
                        splitter.separate()
                        reasoning = separate
                    content, more = splitter.feed(delta.get("content") or "")
                    reasoning += more
                    finish = choice.get("finish_reason") or finish
                if content or reasoning:
                    answer, reasoning_all = answer + content, reasoning_all + reasoning
                    yield Delta(content, reasoning)
        finally:
            await opened.close()
        if finish is None:
            raise LLMStreamBroken(
                f"the stream from {self.base_url} ended without a finish reason.",
                after_output=bool(answer or reasoning_all),
            )
        content, reasoning = splitter.finish(truncated=finish == "length")
        if splitter.orphan_close and self._open_think is None:
            log.warning(
                "model %s wrote </think> without <think>: holding its answers back until "
                "</think> from now on (start SGLang with --reasoning-parser to avoid this)",
                opened.model,
            )
            self._open_think = True
        if not (answer + content).strip():
            yield Delta(reasoning=reasoning, usage=usage, finish_reason=finish)
            raise LLMEmptyAnswer(
                self._empty_msg(finish),
                reasoning=reasoning_all + reasoning,
                usage=usage,
                finish_reason=finish,
            )
        yield Delta(content, reasoning, usage, finish)

    async def _complete_once(
        self, messages: list[dict[str, str]], max_tokens: int | None
    ) -> tuple[str, str, Usage]:
        try:
            model = await self._model_name()
            result = await self._openai.chat.completions.create(
                stream=False, **self._request(messages, model, max_tokens)
            )
        except (openai.APIError, httpx.HTTPError) as exc:
            raise self._api_error(exc) from exc
        usage = _usage(result.usage) if result.usage else Usage()
        choice = result.choices[0] if result.choices else None
        finish = choice.finish_reason if choice else None
        reasoning = _reasoning_of(choice.message) if choice else None
        splitter = ThinkSplitter(hold=True)  # no latency to save: always the safe rule
        if reasoning:
            splitter.separate()
        content, more = splitter.feed((choice.message.content or "") if choice else "")
        rest, unclosed = splitter.finish(truncated=finish == "length" and self._hold())
        content, reasoning = content + rest, (reasoning or "") + more + unclosed
        if not content.strip():
            raise LLMEmptyAnswer(
                self._empty_msg(finish), reasoning=reasoning, usage=usage, finish_reason=finish
            )
        return content, reasoning, usage


def _now() -> float:
    return asyncio.get_running_loop().time()


def _reasoning_of(obj: object) -> str | None:
    """SGLang's `reasoning_content` (vLLM and others: `reasoning`), an extra field to openai."""
    value = getattr(obj, "reasoning_content", None) or getattr(obj, "reasoning", None)
    return value if isinstance(value, str) else None


async def _chunks(response: httpx.Response) -> AsyncGenerator[Chunk, None]:
    """The decoded chunks of an OpenAI-style SSE stream, up to `data: [DONE]`."""
    try:
        async for event in EventSource(response).aiter_sse():
            if event.data == "[DONE]":
                return
            if not event.data:
                continue
            try:
                chunk = json.loads(event.data)
            except ValueError:
                raise _ServerError(f"a stream chunk is not JSON: {event.data[:200]!r}") from None
            if not isinstance(chunk, dict):
                raise _ServerError(f"a stream chunk is not an object: {event.data[:200]!r}")
            if error := chunk.get("error"):
                message = error.get("message") if isinstance(error, dict) else None
                raise _ErrorEvent(str(message or json.dumps(error))[:500])
            yield chunk
    except SSEError as exc:
        raise _ServerError(str(exc)) from None


def _choices(chunk: Chunk) -> list[Mapping[str, Any]]:
    choices = chunk.get("choices")
    return [c for c in choices if isinstance(c, dict)] if isinstance(choices, list) else []


def _reasoning_in(delta: Mapping[str, Any]) -> str | None:
    value = delta.get("reasoning_content") or delta.get("reasoning")
    return value if isinstance(value, str) else None


def _has_text(chunk: Chunk) -> bool:
    return any(
        (c.get("delta") or {}).get("content") or _reasoning_in(c.get("delta") or {})
        for c in _choices(chunk)
    )


def _usage_of(raw: object) -> Usage | None:
    """Usage from a chunk's `usage` object (SGLang: cached_tokens under prompt_tokens_details)."""
    if not isinstance(raw, dict):
        return None
    details = raw.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(raw.get("prompt_tokens") or 0), int(raw.get("completion_tokens") or 0), cached)


def _usage(usage: CompletionUsage) -> Usage:
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return Usage(usage.prompt_tokens, usage.completion_tokens, cached)


def _context_numbers(text: str) -> tuple[int | None, int | None]:
    """(n_ctx, n_prompt_tokens) from a context-size refusal: llama.cpp's JSON fields, else the
    numbers in SGLang's / vLLM's wording."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("n_ctx"), int):
        prompt = error.get("n_prompt_tokens")
        return error["n_ctx"], prompt if isinstance(prompt, int) else None
    match = _N_CTX.search(text)
    return (int(match.group(1)) if match else None), None
