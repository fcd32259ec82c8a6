"""Embeddings from an OpenAI-compatible `/v1/embeddings` server (SGLang, llama.cpp, vLLM, …).

Requests go out in batches of `batch_size` texts, each with a timeout; connection failures,
timeouts, 429 and 5xx answers are retried (exponential backoff, `retries` times) as the chat
model's client does; any other answer fails at once with what the server said and what to check.
Vectors are normalized here, whatever the server returns.

No tokenizer is at hand, so `count_tokens` (chunk sizes) estimates: one token per Chinese
character, four characters per token elsewhere; and `readable` follows the model's declared
languages only.
"""

from __future__ import annotations

import asyncio
import math
import re
import weakref
from typing import Any

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

from knowledge.embedding.base import Embedder, EmbeddingModelError, Query
from knowledge.families import AUTO, language_of

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
_WORD = re.compile(r"[^\s\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]+")


class EmbeddingServerError(EmbeddingModelError):
    """The embeddings server failed or is unreachable; the message says what to check."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class HttpEmbedder(Embedder):
    """An `Embedder` whose vectors come from an OpenAI-compatible embeddings endpoint."""

    backend_name = "http"
    vectors = "http"

    def __init__(
        self,
        model: str,
        *,
        url: str,
        api_key: str = "",
        batch_size: int = 64,
        timeout: float = 30.0,
        retries: int = 2,
        input_type: bool = False,
        query_prefix: str = AUTO,
        passage_prefix: str = AUTO,
        languages: list[str] | tuple[str, ...] = (),
    ) -> None:
        super().__init__(
            model,
            batch_size=batch_size,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            languages=languages,
        )
        self._url = url.rstrip("/") + "/embeddings"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = timeout
        self._retries = retries
        self._input_type = input_type
        self._dimension: int | None = None
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = (
            weakref.WeakKeyDictionary()
        )

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dimension(self) -> int:
        """The embedding size, known after the first request (`warmup` makes one)."""
        if self._dimension is None:
            raise EmbeddingModelError(
                f"the size of {self._model_name!r}'s embeddings is not known yet: call warmup()"
            )
        return self._dimension

    async def warmup(self) -> None:
        """Ask the server for one embedding: it is reachable and serves the model."""
        await self._request(["warmup"], "passage")

    async def embed(self, texts: list[str]) -> list[list[float]]:
        """Unit-length embeddings for passages, in order, in batches of `batch_size`."""
        prefix = self.profile.passage_prefix
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [prefix + t for t in texts[start : start + self.batch_size]]
            vectors.extend(await self._request(batch, "passage"))
        return vectors

    async def _query(self, text: str) -> Query:
        """A question's embedding and whether the model reads its language (1.0 or 0.0)."""
        (vector,) = await self._request([self.profile.query_prefix + text], "query")
        return vector, self.readable(text)

    def count_tokens(self, text: str) -> int:
        """An estimate (no tokenizer here): a token per Chinese character or fullwidth mark,
        one per four characters of other words."""
        return len(_CJK.findall(text)) + sum(math.ceil(len(w) / 4) for w in _WORD.findall(text))

    def readable(self, text: str) -> float:
        """1.0 when the model declares the text's language (or declares none), else 0.0."""
        return 1.0 if self.profile.reads(language_of(text)) else 0.0

    async def close(self) -> None:
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
        await super().close()

    def _client(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = httpx.AsyncClient(
                timeout=httpx.Timeout(self._timeout), headers=self._headers
            )
        return client

    async def _request(self, texts: list[str], kind: str) -> list[list[float]]:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self._retries + 1),
            wait=wait_exponential(multiplier=0.2, max=3.0),
            retry=retry_if_exception(lambda e: isinstance(e, EmbeddingServerError) and e.retryable),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                return await self._request_once(texts, kind)
        raise AssertionError("unreachable: tenacity reraises the last failure")

    async def _request_once(self, texts: list[str], kind: str) -> list[list[float]]:
        payload: dict[str, Any] = {"model": self._model_name, "input": texts}
        if self._input_type:
            payload["input_type"] = kind
        try:
            response = await self._client().post(self._url, json=payload)
        except httpx.TimeoutException as exc:
            raise self._error(f"no answer within {self._timeout:g} s", retryable=True) from exc
        except httpx.TransportError as exc:
            raise self._error(f"cannot connect ({exc})", retryable=True) from exc
        if response.status_code != 200:
            retryable = response.status_code == 429 or response.status_code >= 500
            detail = response.text[:300].strip()
            raise self._error(f"HTTP {response.status_code}: {detail}", retryable=retryable)
        return self._vectors(response, len(texts))

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        try:
            rows = sorted(response.json()["data"], key=lambda row: int(row["index"]))
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (ValueError, KeyError, TypeError) as exc:
            raise self._error(f"not an OpenAI embeddings answer ({exc})") from exc
        if len(vectors) != count or len({len(v) for v in vectors}) > 1:
            raise self._error(f"asked for {count} embeddings, got {len(vectors)} of mixed sizes")
        self._dimension = len(vectors[0]) if vectors else self._dimension
        return [_unit(v) for v in vectors]

    def _error(self, detail: str, *, retryable: bool = False) -> EmbeddingServerError:
        return EmbeddingServerError(
            f"embeddings server {self._url} (model {self._model_name!r}): {detail}; check that "
            "it runs and serves that model (knowledge.embedding_url, knowledge.embedding_model), "
            "or set knowledge.embedding_backend = 'onnx' for the bundled model",
            retryable=retryable,
        )


def _unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(math.fsum(x * x for x in vector))
    return [x / norm for x in vector] if norm > 0 else vector
