"""A fake OpenAI-compatible embeddings server (`POST /v1/embeddings`) over real HTTP.

Vectors are deterministic and mean something: each text is hashed into DIMENSION buckets by its
words (but the commonest) and Chinese character bigrams (feature hashing), so texts that share words are close and
retrieval over them behaves like a (crude) real model. A model name containing "other" hashes
differently: vectors of two models never agree.

`with FakeEmbeddings() as fake:` serves on 127.0.0.1 (ephemeral port) from a background thread;
`fake.behave(fail=2, status=503, delay=…, down=True, api_key=…)` changes it; `fake.requests`
lists what came in (model, inputs, input_type).

By hand: `python -m tests.fakes.embeddings --port 8089`, then `[knowledge] embedding_backend =
"http"`, `embedding_url = "http://127.0.0.1:8089/v1"`, `embedding_model = "fake-multilingual"`.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import re
import threading
from dataclasses import dataclass, fields, replace
from typing import Any

from aiohttp import web

from tests.fakes.threaded import ThreadedServer

DIMENSION = 256
_WORD = re.compile(r"[a-z0-9]+")
_STOP = frozenset(
    "a an and are at be by can do does for from how i in is it my of on or the to what when "
    "where which who why with you your".split()
)
_CJK = re.compile(r"[\u4e00-\u9fff]+")


def fake_vector(text: str, model: str = "") -> list[float]:
    """The fake's embedding of `text` (unit length)."""
    salt = "other" if "other" in model else ""
    lowered = text.lower()
    features = [w for w in _WORD.findall(lowered) if w not in _STOP]
    for run in _CJK.findall(lowered):
        features.extend(run[i : i + 2] for i in range(max(1, len(run) - 1)))
    vector = [0.0] * DIMENSION
    for feature in features or ["<empty>"]:
        digest = hashlib.sha1(f"{salt}{feature}".encode()).digest()
        vector[digest[0] % DIMENSION] += 1.0 if digest[1] % 2 else -1.0
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]


@dataclass(frozen=True)
class Behaviour:
    fail: int = 0  # answer the next `fail` requests with `status`
    status: int = 503
    delay: float = 0.0  # seconds before answering
    down: bool = False  # every request fails with `status`
    api_key: str = ""  # when set, requests need "Authorization: Bearer <api_key>"


@dataclass(frozen=True)
class Request:
    model: str
    inputs: tuple[str, ...]
    input_type: str | None


class FakeEmbeddings(ThreadedServer):
    label = "fake embeddings"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **behaviour: Any) -> None:
        self.host, self.port = host, port
        self._behaviour = Behaviour(**behaviour)
        self._lock = threading.Lock()
        self._requests: list[Request] = []

    @property
    def url(self) -> str:
        """The OpenAI-compatible base URL (…/v1)."""
        return f"http://{self.host}:{self.port}/v1"

    def behave(self, **changes: Any) -> None:
        known = {f.name for f in fields(Behaviour)}
        if unknown := set(changes) - known:
            raise TypeError(f"unknown behaviour {sorted(unknown)}; known: {sorted(known)}")
        with self._lock:
            self._behaviour = replace(self._behaviour, **changes)

    @property
    def requests(self) -> list[Request]:
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()

    def _application(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/embeddings", self._embeddings)
        return app

    async def _embeddings(self, request: web.Request) -> web.Response:
        with self._lock:
            b = self._behaviour
            failing = b.down or b.fail > 0
            if b.fail > 0:
                self._behaviour = replace(b, fail=b.fail - 1)
        if b.api_key and request.headers.get("Authorization") != f"Bearer {b.api_key}":
            return _error(401, "invalid api key")
        try:
            payload = await request.json()
        except ValueError:
            return _error(400, "body is not JSON")
        inputs = payload.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if (
            not isinstance(inputs, list)
            or not inputs
            or not all(isinstance(t, str) for t in inputs)
        ):
            return _error(400, "'input' must be a string or a non-empty array of strings")
        model = str(payload.get("model", ""))
        with self._lock:
            self._requests.append(Request(model, tuple(inputs), payload.get("input_type")))
        if b.delay:
            await asyncio.sleep(b.delay)
        if failing:
            return _error(b.status, "fake failure")
        data = [
            {"object": "embedding", "index": i, "embedding": fake_vector(text, model)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(t.split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )


def _error(status: int, message: str) -> web.Response:
    body = {"error": {"message": message, "type": "invalid_request_error", "code": status}}
    return web.json_response(body, status=status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8089)
    args = parser.parse_args()
    with FakeEmbeddings(port=args.port) as fake:
        print(f"fake embeddings at {fake.url}")
        threading.Event().wait()


if __name__ == "__main__":
    main()
