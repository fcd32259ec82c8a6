"""What can go wrong with the model server, as exceptions the core maps to answers, and how a
transport failure or an HTTP status becomes one of them (the messages carry the fix).

Only server faults feed the breaker (cannot connect, 5xx, a stall, a cut connection, an error
chunk); an answer cut by `max_tokens` or by teambot's own `total_timeout`, or a prompt larger
than the context, is the request's doing and does not."""

from __future__ import annotations

import json
import re
import sys

import httpx

from engine.messages import Usage

# How servers word "the prompt is larger than the context" (llama.cpp, SGLang, vLLM, OpenAI).
CONTEXT_ERROR = re.compile(
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
        return bool(CONTEXT_ERROR.search(self.detail))


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


def fix(base_url: str) -> str:
    """What the operator can do about a server that does not answer."""
    return (
        "Check that SGLang is running (python -m sglang.launch_server --model-path <model> "
        "--reasoning-parser deepseek-r1 --port 30000) or set TEAMBOT_LLM__BASE_URL "
        f"(now {base_url})."
    )


def timeout_message(base_url: str, which: str, seconds: float) -> str:
    return (
        f"the model server at {base_url} exceeded {which} ({seconds:g}s); it may be overloaded. "
        f"Raise TEAMBOT_LLM__{which.upper()} or add capacity."
    )


def empty_message(base_url: str, finish: str | None, max_tokens: int) -> str:
    if finish == "length":
        return (
            f"the model used all max_tokens ({max_tokens}) before it finished thinking; raise "
            "TEAMBOT_LLM__MAX_TOKENS."
        )
    return f"the model at {base_url} returned an empty answer (finish_reason={finish})."


def malformed(base_url: str, body: object) -> LLMUnavailable:
    """A 200 whose body is no chat completion (a proxy's HTML page, an SSE stream, JSON cut short
    or of another shape): treated like a server that is not there."""
    sample = " ".join(str(body).split())[:120]
    return LLMUnavailable(
        f"the model server at {base_url} answered with something that is not an OpenAI chat "
        f"completion or model list ({sample!r}): is a proxy, a login page or another service at "
        "that address? "
        f"{fix(base_url)}"
    )


def transport_errors(*more: type[Exception]) -> tuple[type[Exception], ...]:
    """What a call to the server raises when it fails on the way: httpx's errors, and openai's
    once openai is loaded (it is imported only for one-shot calls: see LLMClient._sdk)."""
    openai = sys.modules.get("openai")
    loaded = (openai.APIError,) if openai is not None else ()
    return (*more, httpx.HTTPError, *loaded)


def api_error(base_url: str, exc: Exception) -> LLMError:
    """An openai or httpx exception as the LLMError it means."""
    openai = sys.modules.get("openai")  # not loaded: `exc` cannot be one of its errors
    if openai is not None and isinstance(exc, openai.APIStatusError):
        return status_error(base_url, exc.status_code, str(exc))
    return LLMUnavailable(
        f"cannot reach the model server at {base_url} ({exc!r}). {fix(base_url)}", retryable=True
    )


def status_error(base_url: str, status: int, text: str) -> LLMError:
    """An HTTP error status (and the body's text) as the LLMError it means."""
    detail = f"the model server at {base_url} answered HTTP {status}"
    if status == 400 and CONTEXT_ERROR.search(text):
        n_ctx, prompt = _context_numbers(text)
        return LLMContextExceeded(
            f"{detail}: the prompt is larger than the model's context ({text[:300]})",
            n_ctx=n_ctx,
            prompt_tokens=prompt,
        )
    if status in (401, 403):
        return LLMUnavailable(
            f"{detail}: set TEAMBOT_LLM__API_KEY to the key SGLang was started with (--api-key)."
        )
    if status == 429 or status >= 500:
        return LLMUnavailable(f"{detail} ({text}). {fix(base_url)}", retryable=True)
    return LLMError(f"{detail}, rejecting the request: {text}")


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
