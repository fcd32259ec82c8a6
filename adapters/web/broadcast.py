"""The web chat's page events across replicas: what one replica posts into a web thread (an
agent's console reply, an apology, a late answer) reaches that thread's open pages on every
replica.

Each process delivers an event to its own open pages at once (`adapters/web/adapter.py:Pages`)
and sends it to the others through one of:

* `PostgresBroadcast` — `LISTEN/NOTIFY` on teambot's own PostgreSQL: one listening connection a
  process (asyncpg's listener API), re-opened with backoff when it drops; sent with `pg_notify`
  through the database pool. A NOTIFY payload holds at most 8000 bytes, so a long event goes
  as numbered chunks in one transaction (PostgreSQL delivers them together and in order).
* `RedisBroadcast` — Redis pub/sub, when `[policy] redis_url` is set (or `[webchat] events =
  "redis"`); subscribed again with backoff when Redis goes away.
* `LocalOnly` — one process (SQLite, the embedded default): nothing to send.

Every message names the process that sent it, and a process drops its own: each open page
hears an event once. An event sent while a replica's listener is reconnecting does not reach
that replica's pages (the page's transcript shows it on reload).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from engine.messages import ThreadKey

log = logging.getLogger(__name__)

CHANNEL = "teambot_web_pages"
CHUNK = 7000  # characters of ASCII JSON per NOTIFY (PostgreSQL's limit: 8000 bytes a payload)
PARTIAL_SECONDS = 30.0  # chunks of an event not complete by then are dropped
BACKOFF = (0.5, 30.0)  # first and longest wait before listening again
PING_SECONDS = 15.0  # the listening connection is checked this often

Deliver = Callable[[ThreadKey, dict[str, Any]], object]


class Broadcast(Protocol):
    """Sends page events to the other replicas and hands theirs to `deliver`."""

    async def start(self, deliver: Deliver) -> None: ...

    async def send(self, key: ThreadKey, event: dict[str, Any]) -> None: ...

    async def stop(self) -> None: ...

    async def check(self) -> tuple[str, str]:
        """(ok | warning | error, what `teambot doctor` says)."""
        ...


class LocalOnly:
    """One process: its pages are all the pages there are."""

    async def start(self, deliver: Deliver) -> None:
        return None

    async def check(self) -> tuple[str, str]:
        return "ok", "this process only: run one replica, or use PostgreSQL or Redis"

    async def send(self, key: ThreadKey, event: dict[str, Any]) -> None:
        return None

    async def stop(self) -> None:
        return None


class Wire:
    """The messages on the channel: `origin id index count body`, the body ASCII JSON of the
    thread key and the event, cut into `size`-character chunks; put back together on arrival."""

    def __init__(self, size: int = CHUNK) -> None:
        self.origin = uuid.uuid4().hex  # this process
        self._size = size
        self._partial: dict[str, tuple[float, list[str | None]]] = {}

    def encode(self, key: ThreadKey, event: dict[str, Any]) -> list[str]:
        where = [key.platform, key.tenant, key.chat_id, key.thread_id]
        body = json.dumps({"key": where, "event": event}, ensure_ascii=True)
        parts = [body[i : i + self._size] for i in range(0, len(body), self._size)] or [""]
        name = uuid.uuid4().hex
        return [f"{self.origin} {name} {i} {len(parts)} {p}" for i, p in enumerate(parts)]

    def decode(self, message: str) -> tuple[ThreadKey, dict[str, Any]] | None:
        """The event once all its chunks arrived; None for this process's own, a chunk of an
        event still incomplete, or a message that is not ours."""
        try:
            origin, name, index, count, part = message.split(" ", 4)
            at, total = int(index), int(count)
        except ValueError:
            log.warning("web page events: a message not in teambot's form was ignored")
            return None
        if origin == self.origin or not 0 <= at < total:
            return None
        now = time.monotonic()
        self._partial = {n: v for n, v in self._partial.items() if now - v[0] < PARTIAL_SECONDS}
        _, parts = self._partial.setdefault(name, (now, [None] * total))
        if len(parts) != total:
            return None
        parts[at] = part
        if any(p is None for p in parts):
            return None
        del self._partial[name]
        try:
            found = json.loads("".join(p or "" for p in parts))
            return ThreadKey(*found["key"]), dict(found["event"])
        except (ValueError, TypeError, KeyError):
            log.warning("web page events: an unreadable event was ignored")
            return None


class Listening:
    """A background task that keeps listening: `connect` runs until the connection is lost,
    then it is called again after a growing pause (capped), until `stop`."""

    def __init__(self, what: str, connect: Callable[[], Awaitable[None]]) -> None:
        self._what, self._connect = what, connect
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()
        self.sessions = 0  # how many times it began listening

    def listening(self) -> None:
        """Called by `connect` once it listens."""
        self.sessions += 1
        self.connected.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"listen: {self._what}")

    async def _run(self) -> None:
        pause = BACKOFF[0]
        while True:
            began = time.monotonic()
            try:
                await self._connect()
                log.warning("%s: the listening connection ended; listening again", self._what)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # any failure: wait, then listen again
                log.warning("%s: not listening (%s); again in %.1f s", self._what, error, pause)
            self.connected.clear()
            if time.monotonic() - began > 2 * PING_SECONDS:
                pause = BACKOFF[0]  # it worked for a while: start the backoff over
            await asyncio.sleep(pause)
            pause = min(pause * 2, BACKOFF[1])

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


class _Listened:
    """What the PostgreSQL and Redis broadcasts share: a `Wire` for their messages and a
    `Listening` task that runs the subclass's `_listen` and hands what arrives to `deliver`."""

    def __init__(self, what: str, wire: Wire) -> None:
        self._wire = wire
        self._deliver: Deliver = lambda key, event: None
        self._listening = Listening(what, self._listen)

    @property
    def listener(self) -> Listening:
        return self._listening

    async def start(self, deliver: Deliver) -> None:
        self._deliver = deliver
        self._listening.start()

    async def _listen(self) -> None:
        raise NotImplementedError


class PostgresBroadcast(_Listened):
    """LISTEN/NOTIFY on teambot's PostgreSQL (`url` is the SQLAlchemy URL of `[storage]`)."""

    def __init__(self, url: str, engine: Callable[[], AsyncEngine | None]) -> None:
        super().__init__("web page events (PostgreSQL)", Wire())
        self._url = url
        self._engine = engine

    async def _listen(self) -> None:
        conn = await _connect(self._url)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _: lost.set())
            await conn.add_listener(CHANNEL, self._heard)
            self._listening.listening()
            log.info("web page events: listening on PostgreSQL channel %s", CHANNEL)
            while not lost.is_set():
                try:
                    await asyncio.wait_for(lost.wait(), PING_SECONDS)
                except TimeoutError:  # quiet for a while: is the connection still there?
                    await conn.fetchval("SELECT 1", timeout=PING_SECONDS)
        finally:
            conn.terminate()

    async def check(self) -> tuple[str, str]:
        try:
            conn = await _connect(self._url)
            await conn.close()
        except Exception as error:  # the doctor reports any failure
            return "error", f"PostgreSQL LISTEN/NOTIFY: cannot connect ({error})"
        return "ok", f"every replica's pages, through PostgreSQL LISTEN/NOTIFY ({CHANNEL})"

    def _heard(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        found = self._wire.decode(payload)
        if found is not None:
            self._deliver(*found)

    async def send(self, key: ThreadKey, event: dict[str, Any]) -> None:
        engine = self._engine()
        if engine is None:
            raise RuntimeError("the database is not open yet")
        async with engine.begin() as conn:  # one transaction: the chunks arrive together
            for message in self._wire.encode(key, event):
                await conn.execute(
                    text("SELECT pg_notify(:channel, :message)"),
                    {"channel": CHANNEL, "message": message},
                )

    async def stop(self) -> None:
        await self._listening.stop()


async def _connect(url: str) -> Any:
    """One asyncpg connection to the database of the SQLAlchemy `url` (its host, port, user,
    password, database and driver options, as the engine's own connections get them)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    options: dict[str, Any] = parsed.translate_connect_args(username="user")
    accepted = inspect.signature(asyncpg.connect).parameters
    options |= {k: v for k, v in parsed.query.items() if k in accepted}  # ssl=…, not SQLAlchemy's
    return await asyncpg.connect(**options, timeout=10)


class RedisBroadcast(_Listened):
    """Redis pub/sub (`url`: redis://host:6379/0)."""

    def __init__(self, url: str) -> None:
        from redis.asyncio import Redis

        # Redis takes up to 512 MB a message: never chunked
        super().__init__("web page events (Redis)", Wire(size=10**9))
        self._redis = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=15)

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self._listening.listening()
            log.info("web page events: subscribed to Redis channel %s", CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=PING_SECONDS)
                if message is None:
                    await pubsub.ping()
                    continue
                data = message.get("data")
                if isinstance(data, bytes):
                    found = self._wire.decode(data.decode("ascii", "replace"))
                    if found is not None:
                        self._deliver(*found)
        finally:
            await pubsub.aclose()

    async def send(self, key: ThreadKey, event: dict[str, Any]) -> None:
        for message in self._wire.encode(key, event):
            await self._redis.publish(CHANNEL, message)

    async def check(self) -> tuple[str, str]:
        try:
            await self._redis.ping()
        except Exception as error:  # the doctor reports any failure
            return "error", f"Redis pub/sub: cannot reach [policy] redis_url ({error})"
        return "ok", f"every replica's pages, through Redis pub/sub ({CHANNEL})"

    async def stop(self) -> None:
        await self._listening.stop()
        await self._redis.aclose()


def make_broadcast(
    kind: str, database_url: str, redis_url: str, engine: Callable[[], AsyncEngine | None]
) -> Broadcast:
    """`kind` "auto": Redis when `redis_url` is set, else PostgreSQL when the database is,
    else this process alone; or "redis", "postgres", "local" as named."""
    if kind == "auto":
        postgres = database_url.startswith("postgresql")
        kind = "redis" if redis_url else "postgres" if postgres else "local"
    if kind == "redis":
        if not redis_url:
            raise ValueError(
                '[webchat] events = "redis" needs [policy] redis_url (TEAMBOT_POLICY__REDIS_URL)'
            )
        return RedisBroadcast(redis_url)
    if kind == "postgres":
        if not database_url.startswith("postgresql"):
            raise ValueError(
                '[webchat] events = "postgres" needs a PostgreSQL [storage] url; '
                'use "local" (one process) or "redis"'
            )
        return PostgresBroadcast(database_url, engine)
    return LocalOnly()
