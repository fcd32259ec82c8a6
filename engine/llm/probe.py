"""What the model server says about itself: context size, parallel slots, how it handles the
model's thinking, and whether it can count tokens; and what `teambot doctor` reports of it.

SGLang answers `/get_server_info` (`/server_info` since 0.5) with its launch arguments
(`reasoning_parser`, `max_running_requests`, `context_length`) and puts `max_model_len` on each
`/v1/models` card; llama.cpp's `llama-server` answers `/props` (`default_generation_settings.n_ctx`
per slot, `total_slots`, `chat_template`) and `meta.n_ctx` on its cards. Both tokenize at
`POST /tokenize`. Every question here is optional: a server that answers none of them is an
OpenAI-compatible server like any other, and teambot falls back to its settings.

From those answers: `TokenCounter` counts with the server's tokenizer when it offers one
(remembering recent texts), else a conservative per-script estimate; `Budget` is what one
request may hold (engine/answer/budget.py fits a prompt to it).
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from engine.text import estimate_tokens as estimate

log = logging.getLogger(__name__)

# A chat template that writes <think> into the generation prompt: the model's output then
# carries only the closing </think>, so answer text must be held back until it comes.
_OPENS_THINK = re.compile(r"add_generation_prompt[\s\S]*?<think>")


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


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server reported; None where it did not say."""

    kind: str = "openai"  # sglang | llama.cpp | openai (nothing beyond the OpenAI API)
    models: tuple[str, ...] = ()
    context: int | None = None  # tokens one request may hold (prompt + answer)
    slots: int | None = None  # requests the server runs at once
    reasoning_parser: str | None = None  # SGLang --reasoning-parser: thinking arrives separated
    opens_think: bool | None = None  # llama.cpp: the chat template opens <think> itself
    tokenize: bool = False  # POST /tokenize answers


async def discover(
    http: httpx.AsyncClient, root_url: str, headers: Mapping[str, str], seconds: float
) -> ServerInfo:
    """Ask the server at `root_url` (no /v1) what it is; raises httpx.HTTPError when it is
    unreachable, else answers with what it could learn."""
    models = await _get(http, f"{root_url}/v1/models", headers, seconds, required=True)
    cards = [c for c in (models or {}).get("data") or [] if isinstance(c, dict)]
    names = tuple(str(c.get("id")) for c in cards if c.get("id"))
    card = cards[0] if cards else {}
    meta: dict[str, Any] = card["meta"] if isinstance(card.get("meta"), dict) else {}
    props = await _get(http, f"{root_url}/props", headers, seconds)
    server = None
    for path in ("/server_info", "/get_server_info"):
        if props is None and (server := await _get(http, root_url + path, headers, seconds)):
            break
    kind = "llama.cpp" if props else "sglang" if server else "openai"
    generation = (props or {}).get("default_generation_settings")
    generation = generation if isinstance(generation, dict) else {}
    context = _int(generation.get("n_ctx")) or _int(meta.get("n_ctx"))
    context = (
        context or _int(card.get("max_model_len")) or _int((server or {}).get("context_length"))
    )
    slots = _int((props or {}).get("total_slots")) or _running(server)
    parser = (server or {}).get("reasoning_parser") or None
    template = (props or {}).get("chat_template")
    opens = bool(_OPENS_THINK.search(template)) if isinstance(template, str) and template else None
    if parser:
        opens = False  # SGLang's parser takes the thinking out of `content` itself
    tokenize = await _can_tokenize(http, root_url, headers, seconds)
    return ServerInfo(kind, names, context, slots, parser, opens, tokenize)


def reasoning_rule(setting: str, info: ServerInfo | None) -> str:
    """How teambot treats the model's thinking, and why: `setting` is [llm] reasoning."""
    if setting != "auto":
        return f"{setting} ([llm] reasoning)"
    if info is not None and info.reasoning_parser:
        return f"separated by the server (reasoning parser {info.reasoning_parser})"
    if info is not None and info.opens_think is not None:
        opens = "opens <think>: answers held until </think>" if info.opens_think else "plain"
        return f"{opens} (the server's chat template)"
    return "plain until the model writes </think> unopened (server did not say)"


async def count_tokens(
    http: httpx.AsyncClient, root_url: str, headers: Mapping[str, str], text: str, seconds: float
) -> int:
    """Tokens in `text` by the server's own tokenizer (llama.cpp reads `content`, SGLang and
    vLLM `prompt`; neither adds special tokens here)."""
    body = {"content": text, "prompt": text, "add_special": False, "add_special_tokens": False}
    response = await http.post(f"{root_url}/tokenize", json=body, headers=headers, timeout=seconds)
    response.raise_for_status()
    data = response.json()
    if isinstance(data.get("count"), int):
        return int(data["count"])
    tokens = data.get("tokens")
    if not isinstance(tokens, list):
        raise ValueError(f"/tokenize answered without tokens: {str(data)[:200]}")
    return len(tokens)


async def tool_parser(
    http: httpx.AsyncClient, root_url: str, headers: Mapping[str, str], seconds: float
) -> str | None:
    """SGLang's `--tool-call-parser` as `/model_info` reports it; None when the server names none
    or does not answer."""
    info = await _get(http, f"{root_url}/model_info", headers, seconds)
    parser = (info or {}).get("tool_call_parser")
    return str(parser) if parser else None


async def _can_tokenize(
    http: httpx.AsyncClient, root_url: str, headers: Mapping[str, str], seconds: float
) -> bool:
    try:
        return await count_tokens(http, root_url, headers, "hello", seconds) > 0
    except (httpx.HTTPError, ValueError, AttributeError):
        return False


async def _get(
    http: httpx.AsyncClient,
    url: str,
    headers: Mapping[str, str],
    seconds: float,
    *,
    required: bool = False,
) -> dict[str, Any] | None:
    try:
        response = await http.get(url, headers=headers, timeout=seconds)
    except httpx.HTTPError:
        if required:
            raise
        return None
    if required:
        response.raise_for_status()
    if response.status_code != 200:
        return None
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _running(server: Mapping[str, Any] | None) -> int | None:
    if not server:
        return None
    states = server.get("internal_states")
    first = states[0] if isinstance(states, list) and states and isinstance(states[0], dict) else {}
    return _int(server.get("max_running_requests")) or _int(first.get("max_running_requests"))


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


# -- counting and budgets: what one request may hold -------------------------------------

PER_MESSAGE = 8  # chat-template tokens around each message (role markers, separators)
PER_PROMPT = 16  # the generation prompt and BOS


class TokenCounter:
    """Counts with `remote` (the server's tokenizer) when given, remembering the last few
    thousand texts; falls back to `estimate` for good when the remote count fails."""

    def __init__(
        self, remote: Callable[[str], Awaitable[int]] | None = None, *, size: int = 4096
    ) -> None:
        self._remote = remote
        self._size = size
        self._known: OrderedDict[str, int] = OrderedDict()
        self.exact = remote is not None

    async def count(self, text: str) -> int:
        if not text:
            return 0
        if (known := self._known.get(text)) is not None:
            self._known.move_to_end(text)
            return known
        if self._remote is None:
            return estimate(text)
        try:
            n = await self._remote(text)
        except Exception:  # any failure: estimate from now on rather than fail the answer
            self._remote, self.exact = None, False
            return estimate(text)
        self._known[text] = n
        if len(self._known) > self._size:
            self._known.popitem(last=False)
        return n

    async def messages(self, messages: Sequence[dict[str, str]]) -> int:
        """Tokens of a chat prompt: its messages' contents plus the template around them."""
        total = PER_PROMPT
        for message in messages:
            total += PER_MESSAGE + await self.count(message["content"])
        return total


@dataclass(frozen=True, slots=True)
class Budget:
    context: int  # tokens one request may hold
    completion: int  # tokens kept for the answer (thinking included)

    @property
    def prompt(self) -> int:
        """Tokens the prompt may use, less a small margin for the template's surprises."""
        return self.context - self.completion - max(16, self.context // 50)
