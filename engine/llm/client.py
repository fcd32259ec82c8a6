"""The client of one SGLang (or any OpenAI-compatible) server: streaming chat with the model's
thinking split off, timeouts, retries before the first token only, bounded concurrency and a
circuit breaker (errors.py says which failures feed it). A completed stream resets the count."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

import engine.llm.errors as errors
import engine.llm.sse as sse
from engine.config import LLMSettings
from engine.llm.breaker import Breaker
from engine.llm.errors import (
    LLMContextExceeded,
    LLMEmptyAnswer,
    LLMError,
    LLMServerError,
    LLMStreamBroken,
    LLMTimeout,
    LLMUnavailable,
)
from engine.llm.probe import (
    Budget,
    ServerInfo,
    ServerReport,
    TokenCounter,
    count_tokens,
    discover,
    reasoning_rule,
    tool_parser,
)
from engine.llm.sse import Delta
from engine.llm.think import CLOSE, OPEN, ThinkSplitter
from engine.messages import Usage

if TYPE_CHECKING:
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion
    from openai.types.completion_usage import CompletionUsage

log = logging.getLogger(__name__)

T = TypeVar("T")
DEFAULT_CONTEXT = 8192  # when neither the server nor [llm] context_size says
DEFAULT_CONCURRENCY = 8  # when neither the server nor [llm] max_concurrency says


@dataclass(frozen=True)
class ToolCall:
    """One call the model made to a tool it was offered: the name and the JSON arguments."""

    name: str
    arguments: str


class _Slots:
    """A semaphore whose size can change: the bound follows the server once it says."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._busy = 0
        self._free = asyncio.Condition()

    async def __aenter__(self) -> None:
        async with self._free:
            while self._busy >= self.limit:
                await self._free.wait()
            self._busy += 1

    async def __aexit__(self, *exc: object) -> None:
        async with self._free:
            self._busy -= 1
            self._free.notify_all()


class LLMClient:
    """Talks to one OpenAI-compatible server. Share one instance; `await close()` at shutdown."""

    def __init__(
        self,
        settings: LLMSettings,
        *,
        http_client: httpx.AsyncClient | None = None,
        open_think: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        """open_think forces the ThinkSplitter hold rule; None: [llm] reasoning, else what the
        server says (SGLang's reasoning parser, llama.cpp's chat template). `clock`: the
        breaker's (tests move it instead of sleeping)."""
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
        self._key = key
        self._openai: AsyncOpenAI | None = None  # built at the first one-shot call (_sdk)
        self._reader = sse.Reader(self._http, self._headers, settings, self.base_url)
        self._sem = _Slots(settings.max_concurrency or DEFAULT_CONCURRENCY)
        self._breaker = Breaker(settings.breaker_failures, settings.breaker_reset, clock=clock)
        self._model = settings.model
        if open_think is None and settings.reasoning != "auto":
            open_think = settings.reasoning == "opens_think"
        self._open_think = open_think
        self._info: ServerInfo | None = None
        self._info_failed_at: float | None = None
        self._info_lock = asyncio.Lock()
        # counts prompt tokens: the server's tokenizer once it offered one, else an estimate
        self.counter = TokenCounter()
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
            seconds = self.settings.connect_timeout + 3
            remote = partial(
                count_tokens, self._http, self.root_url, self._headers, seconds=seconds
            )
            self.counter = TokenCounter(remote)
        if self._open_think is None and info.opens_think is not None:
            self._open_think = info.opens_think
        log.info(
            "model server %s (%s): context %s, %s at once, tokenizer %s, thinking %s",
            self.base_url, info.kind, info.context or "not reported", self._sem.limit,
            "remote" if info.tokenize else "estimated",
            reasoning_rule(self.settings.reasoning, info),
        )  # fmt: skip

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
        return await self._guarded(lambda: self._complete_within(messages, max_tokens))

    async def tool_calls(
        self,
        messages: list[dict[str, str]],
        tools: list[dict[str, Any]],
        *,
        max_tokens: int,
        seconds: float,
    ) -> list[ToolCall]:
        """The calls the model makes to `tools` in one short non-streaming answer ([] when it
        answers in words). Through the breaker and the concurrency bound like every call, with
        complete()'s errors; not retried (callers have a cheaper way to decide)."""
        return await self._guarded(lambda: self._tool_answer(messages, tools, max_tokens, seconds))

    async def _guarded(self, call: Callable[[], Awaitable[T]]) -> T:
        """One non-streaming call through the breaker and the concurrency bound: an unreachable
        or slow server counts against the breaker, an answer resets it."""
        trial = self._admit()
        try:
            async with self._sem:
                result = await call()
        except (LLMUnavailable, LLMTimeout):
            self._breaker.failure()
            raise
        finally:
            if trial:
                self._breaker.trial = False
        self._breaker.success()
        return result

    async def _complete_within(
        self, messages: list[dict[str, str]], max_tokens: int | None
    ) -> tuple[str, str, Usage]:
        """complete() within `total_timeout` (from when a slot is free), retried as configured."""
        try:
            async with asyncio.timeout(self.settings.total_timeout):
                return await self._retrying(lambda: self._complete_once(messages, max_tokens))
        except TimeoutError:
            seconds = self.settings.total_timeout
            message = errors.timeout_message(self.base_url, "total_timeout", seconds)
            raise LLMTimeout(message, which="total_timeout") from None

    async def tool_parser(self) -> str | None:
        """The server's tool-call parser (SGLang `--tool-call-parser`); None when it names none."""
        return await tool_parser(
            self._http, self.root_url, self._headers, self.settings.connect_timeout + 3
        )

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
                reasoning=reasoning_rule(self.settings.reasoning, info),
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
                result = self._checked(
                    await self._sdk.chat.completions.create(
                        model=model,
                        max_tokens=64,
                        messages=[{"role": "user", "content": "Say OK."}],
                    )
                )
        except LLMUnavailable as exc:
            return replace(report, error=f"a test chat request failed: {exc}")
        except ValueError as exc:  # a body that is not JSON
            malformed = errors.malformed(self.base_url, exc)
            return replace(report, error=f"a test chat request failed: {malformed}")
        except errors.transport_errors(TimeoutError) as exc:
            return replace(report, error=f"a test chat request failed: {exc!r}")
        message = result.choices[0].message if result.choices else None
        content = (message.content or "") if message else ""
        separated = True if _reasoning_of(message) else None
        if OPEN in content or CLOSE in content:
            separated = False
        return replace(report, reasoning_separated=separated, latency=time.monotonic() - started)

    # -- internals -------------------------------------------------------------------------------

    @property
    def _sdk(self) -> AsyncOpenAI:
        """openai's client, built at the first one-shot call: importing openai costs ~0.6 s of
        CPU that a streamed answer (read with httpx-sse) or a retrieval-only one never needs."""
        if self._openai is None:
            from openai import AsyncOpenAI

            # openai 1.x runs on httpx; 3.x on httpx2 but still accepts an httpx client.
            client: Any = self._http
            self._openai = AsyncOpenAI(
                base_url=self.base_url,
                api_key=self._key or "EMPTY",
                max_retries=0,
                http_client=client,
            )
        return self._openai

    def _checked(self, result: object) -> ChatCompletion:
        """`result` if it is a chat completion with messages; the openai SDK hands back a 200's
        HTML or SSE body as a str, and JSON of another shape as a hollow model."""
        from openai.types.chat import ChatCompletion, ChatCompletionMessage

        choices = getattr(result, "choices", None)
        if (
            isinstance(result, ChatCompletion)
            and isinstance(choices, list)
            and all(isinstance(getattr(c, "message", None), ChatCompletionMessage) for c in choices)
        ):
            return result
        raise errors.malformed(self.base_url, result)

    def _admit(self) -> bool:
        if not self.settings.enabled:
            raise LLMUnavailable("the model server is disabled ([llm] enabled = false)")
        trial = self._breaker.admit()
        if trial is None:
            raise LLMUnavailable(
                f"the model server at {self.base_url} failed {self._breaker.failures} times in a "
                f"row; not calling it for up to {self.settings.breaker_reset:g}s (circuit breaker "
                f"open). {errors.fix(self.base_url)}"
            )
        return trial

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
        """The served models' names, from GET /models (read with httpx, as the stream is)."""
        try:
            response = await self._http.get(f"{self.base_url}/models", headers=self._headers)
        except httpx.HTTPError as exc:
            raise errors.api_error(self.base_url, exc) from exc
        if response.status_code >= 400:
            raise errors.status_error(self.base_url, response.status_code, response.text)
        try:
            models = response.json()["data"]
            names = [m.get("id") for m in models]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:  # no model list
            raise errors.malformed(self.base_url, "an unreadable /models answer") from exc
        if not all(isinstance(name, str) for name in names):
            raise errors.malformed(self.base_url, models)
        return [str(name) for name in names]

    async def _model_name(self) -> str:
        if not self._model and self._info is not None and self._info.models:
            self._model = self._info.models[0]
        if not self._model:
            models = await self._list_models()
            if not models:
                raise LLMUnavailable(
                    f"{self.base_url}/models lists no models. {errors.fix(self.base_url)}"
                )
            self._model = models[0]
        return self._model

    def _request(self, messages: list[dict[str, str]], max_tokens: int | None) -> dict[str, Any]:
        """The chat request's body, but for the model's name."""
        s = self.settings
        return {
            "messages": messages,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "max_tokens": max_tokens or s.max_tokens,
        }

    async def _stream(
        self, messages: list[dict[str, str]], max_tokens: int | None
    ) -> AsyncGenerator[Delta, None]:
        total_deadline = sse.loop_time() + self.settings.total_timeout
        body = self._request(messages, max_tokens)
        opened = await self._retrying(
            partial(self._reader.open, body, self._model_name, total_deadline)
        )
        # a server with a reasoning parser sends the thinking apart: no tags to look for
        separated = self.settings.reasoning == "auto" and bool(
            self._info and self._info.reasoning_parser
        )
        splitter = None if separated else ThinkSplitter(hold=bool(self._open_think))
        deltas = self._reader.deltas(opened, splitter, total_deadline, self._orphan_close)
        async with aclosing(deltas):
            async for delta in deltas:
                yield delta

    def _orphan_close(self, model: str) -> None:
        """The model closed a </think> it never opened: hold its answers back from now on."""
        if self._open_think is None:
            log.warning(
                "model %s wrote </think> without <think>: holding its answers back until "
                "</think> from now on (start SGLang with --reasoning-parser to avoid this)",
                model,
            )
            self._open_think = True

    async def _tool_answer(
        self,
        messages: list[dict[str, str]],
        tools: list[dict[str, Any]],
        max_tokens: int,
        seconds: float,
    ) -> list[ToolCall]:
        try:
            async with asyncio.timeout(seconds):
                body: dict[str, Any] = {
                    "messages": messages,
                    "model": await self._model_name(),
                    "tools": tools,
                    "tool_choice": "auto",
                    "temperature": 0.0,
                    "max_tokens": max_tokens,
                }
                result = self._checked(
                    await self._sdk.chat.completions.create(stream=False, **body)
                )
        except TimeoutError:
            which = "first_token_timeout"
            raise LLMTimeout(
                errors.timeout_message(self.base_url, which, seconds), which=which
            ) from None
        except errors.transport_errors() as exc:
            raise errors.api_error(self.base_url, exc) from exc
        except ValueError as exc:  # a body that is not JSON
            raise errors.malformed(self.base_url, exc) from exc
        calls = result.choices[0].message.tool_calls if result.choices else None
        functions = [getattr(call, "function", None) for call in calls or ()]
        return [ToolCall(str(f.name), f.arguments or "") for f in functions if f is not None]

    async def _complete_once(
        self, messages: list[dict[str, str]], max_tokens: int | None
    ) -> tuple[str, str, Usage]:
        try:
            model = await self._model_name()
            result = self._checked(
                await self._sdk.chat.completions.create(
                    model=model, stream=False, **self._request(messages, max_tokens)
                )
            )
        except errors.transport_errors() as exc:
            raise errors.api_error(self.base_url, exc) from exc
        except ValueError as exc:  # a body that is not JSON
            raise errors.malformed(self.base_url, exc) from exc
        from openai.types.completion_usage import CompletionUsage

        usage = _usage(result.usage) if isinstance(result.usage, CompletionUsage) else Usage()
        choice = result.choices[0] if result.choices else None
        finish = choice.finish_reason if choice else None
        reasoning = _reasoning_of(choice.message) if choice else None
        splitter = ThinkSplitter(hold=True)  # no latency to save: always the safe rule
        if reasoning:
            splitter.separate()
        content, more = splitter.feed((choice.message.content or "") if choice else "")
        rest, unclosed = splitter.finish(truncated=finish == "length" and bool(self._open_think))
        content, reasoning = content + rest, (reasoning or "") + more + unclosed
        if not content.strip():
            raise LLMEmptyAnswer(
                errors.empty_message(self.base_url, finish, self.settings.max_tokens),
                reasoning=reasoning,
                usage=usage,
                finish_reason=finish,
            )
        return content, reasoning, usage


def _reasoning_of(obj: object) -> str | None:
    """SGLang's `reasoning_content` (vLLM and others: `reasoning`), an extra field to openai."""
    value = getattr(obj, "reasoning_content", None) or getattr(obj, "reasoning", None)
    return value if isinstance(value, str) else None


def _usage(usage: CompletionUsage) -> Usage:
    details = usage.prompt_tokens_details
    cached = details.cached_tokens if details is not None else None
    return Usage(usage.prompt_tokens, usage.completion_tokens, cached)
