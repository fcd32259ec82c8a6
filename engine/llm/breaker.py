"""A circuit breaker: a dead model server costs one fast failure, not a timeout per message."""

from __future__ import annotations

import time
from collections.abc import Callable


class Breaker:
    """Opens after `limit` consecutive failures; one trial call after `reset` seconds."""

    def __init__(
        self, limit: int, reset: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit, self.reset = limit, reset
        self._clock = clock  # seconds; tests pass one they move by hand
        self.failures = 0
        self.opened_at: float | None = None
        self.trial = False
        self.answered = False  # a call has succeeded since start

    @property
    def open(self) -> bool:
        return self.opened_at is not None and (
            self._clock() - self.opened_at < self.reset or self.trial
        )

    def admit(self) -> bool | None:
        """None: fail fast. Else admitted; True when this call is the half-open trial."""
        if self.opened_at is None:
            return False
        if self.open:
            return None
        self.trial = True
        return True

    def success(self) -> None:
        self.failures, self.opened_at, self.answered = 0, None, True

    def failure(self) -> None:
        self.failures += 1
        if self.failures >= self.limit:
            self.opened_at = self._clock()
