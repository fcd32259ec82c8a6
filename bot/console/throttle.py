"""Console login throttling: per client address and for the whole console, with a lockout a
person sees ("try again in 4 min").

Every attempt counts as a failure the moment it starts and is forgiven only when it succeeds,
so 200 guesses sent at once are throttled exactly like 200 sent one after another. The counts
live in this process: with several replicas each enforces its own limits (the global limit is
then per replica).
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True)
class _Window:
    failures: deque[float] = field(default_factory=deque)
    locked_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Lockout:
    seconds: float
    everyone: bool  # True: the console-wide limit, not this client's

    @property
    def minutes(self) -> int:
        return max(1, round(self.seconds / 60))


class LoginThrottle:
    """`per_client` failures within `window` seconds lock that client out for `lockout`
    seconds; `overall` failures from anywhere lock every login out for `lockout` seconds."""

    def __init__(
        self,
        *,
        per_client: int = 5,
        overall: int = 50,
        window: float = 900.0,
        lockout: float = 900.0,
    ) -> None:
        self._per_client, self._overall = per_client, overall
        self._window, self._lockout = window, lockout
        self._clients: dict[str, _Window] = {}
        self._all = _Window()
        self._now = time.monotonic

    def begin(self, client: str) -> Lockout | None:
        """Before checking a password: a Lockout to show, or None and the attempt is counted."""
        now = self._now()
        for window, everyone in ((self._all, True), (self._client(client), False)):
            if window.locked_until > now:
                return Lockout(window.locked_until - now, everyone)
        mine = self._client(client)
        self._fail(mine, self._per_client, now)
        self._fail(self._all, self._overall, now)
        for window, everyone in ((self._all, True), (mine, False)):
            if window.locked_until > now:  # this attempt went over the limit: not checked
                return Lockout(window.locked_until - now, everyone)
        return None

    def succeeded(self, client: str) -> None:
        """The password was right: this client's attempt (and its earlier failures) forgiven."""
        mine = self._clients.pop(client, None)
        if mine is not None and self._all.failures and mine.failures:
            self._all.failures.pop()  # the attempt just counted up front

    def _client(self, client: str) -> _Window:
        if len(self._clients) > 10_000:  # forget the quietest clients first
            for key in list(self._clients)[:1000]:
                del self._clients[key]
        return self._clients.setdefault(client, _Window())

    def _fail(self, window: _Window, limit: int, now: float) -> None:
        window.failures.append(now)
        while window.failures and window.failures[0] < now - self._window:
            window.failures.popleft()
        if len(window.failures) > limit and window.locked_until <= now:
            window.locked_until = now + self._lockout
            window.failures.clear()
