"""HTTP for API-backed source kinds: one request with backoff (tenacity) on rate limits and
passing failures, honouring the server's Retry-After."""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

__all__ = ["RETRIED", "Busy", "send"]

RETRIED = {429, 502, 503, 504}
ATTEMPTS = 6
MAX_WAIT = 60.0
_backoff = wait_exponential(multiplier=0.5, max=MAX_WAIT)


class Busy(Exception):
    """The server asked to slow down (or failed in passing): try again after `after` s."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.after = retry_after(response)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (a number of seconds only), capped at MAX_WAIT."""
    value = response.headers.get("retry-after", "")
    try:
        return min(max(float(value), 0.0), MAX_WAIT)
    except ValueError:
        return None


def _wait(state: RetryCallState) -> float:
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    if isinstance(error, Busy) and error.after is not None:
        return error.after
    return float(_backoff(state))


async def send(http: httpx.AsyncClient, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """The response, after up to ATTEMPTS tries while the server answers 429 or 502–504 or
    the connection fails; the last such response (or error) when they run out."""
    retrying = AsyncRetrying(
        retry=retry_if_exception_type((Busy, httpx.TransportError)),
        wait=_wait,
        stop=stop_after_attempt(ATTEMPTS),
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                response = await http.request(method, url, **kwargs)
                if response.status_code in RETRIED:
                    raise Busy(response)
                return response
    except Busy as busy:
        return busy.response
    raise AssertionError("unreachable: tenacity either returns or raises")
