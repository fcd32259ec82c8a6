"""Web chat sessions: who a browser is, and which chats are its own.

A browser's first request gets a session: a random id in a signed, HttpOnly, SameSite=Lax
cookie (Secure over https). The key that signs it is `[webchat] session_secret`, or else a
random key kept in the database, so every replica accepts every replica's cookies with no
configuration. A request without a valid cookie simply starts a new session: a first message
always works.

A chat belongs to the session that first wrote to it (`web_chat_owners`, in the shared
database: it holds across replicas and restarts). Posting, rating, escalating, the transcript and
the event stream act only on the session's own chats. The database keeps only a hash of each
session id, so a copy of it holds no usable cookie.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, cast

from fastapi import HTTPException
from sqlalchemy import Connection, Table, bindparam, select
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request
from starlette.responses import Response

from adapters.web.config import WebChatSettings
from adapters.web.tables import ChatOwner, SigningKey
from engine.catalog import both
from engine.policy import Buckets, MemoryBuckets
from engine.store.database import Database
from knowledge.timestamps import utcnow

_OWNERS = cast(Table, ChatOwner.__table__)
_OWNER = select(_OWNERS.c.session_hash).where(_OWNERS.c.chat_id == bindparam("o_chat"))

COOKIE = "teambot_chat"
_KEY_NAME = "session"
_PURPOSE = b"teambot web chat session\x00"
_ID_BYTES = 18  # 144 random bits


@dataclass(frozen=True, slots=True)
class Session:
    """One browser: `id` is the cookie's secret part; `fresh` when this request made it."""

    id: str
    fresh: bool = False

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.id.encode()).hexdigest()

    @property
    def label(self) -> str:
        """A short name for logs and rate limits that gives nothing away."""
        return self.hash[:16]


class Sessions:
    """Issues and checks session cookies; records and answers who owns a chat."""

    def __init__(
        self,
        settings: WebChatSettings,
        engine: Callable[[], AsyncEngine | None],
        buckets: Buckets | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._database: Database | None = None
        self._take: Any = None
        self._key: bytes | None = None
        if settings.session_secret is not None and settings.session_secret.get_secret_value():
            secret = settings.session_secret.get_secret_value().encode()
            self._key = hashlib.sha256(b"teambot web chat key\x00" + secret).digest()
        self._key_lock = asyncio.Lock()
        self.buckets = buckets or MemoryBuckets()

    # -- cookies ------------------------------------------------------------------------------

    async def identify(self, request: Request) -> Session:
        """The session of the request's cookie, or a new one when it has none, a forged one or
        one older than `session_days` (checked here too: a copied cookie does not live on)."""
        key = await self._signing_key()
        cookie = request.cookies.get(COOKIE, "")
        signed, _, mac = cookie.rpartition(".")
        found, _, issued = signed.partition(".")
        if found and issued.isdigit() and len(cookie) < 200 and cookie.isascii():
            fresh_enough = time.time() - int(issued) < self.settings.session_days * 86_400
            if fresh_enough and hmac.compare_digest(mac, _sign(key, signed)):
                return Session(found)
        return Session(secrets.token_urlsafe(_ID_BYTES), fresh=True)

    async def attach(self, response: Response, session: Session, request: Request) -> None:
        """Set the cookie on `response` when the session is new."""
        if not session.fresh:
            return
        key = await self._signing_key()
        signed = f"{session.id}.{int(time.time())}"
        response.set_cookie(
            COOKIE,
            f"{signed}.{_sign(key, signed)}",
            max_age=int(self.settings.session_days * 86_400),
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
            path="/",
        )

    # -- ownership ----------------------------------------------------------------------------

    async def claim(self, chat_id: str, session: Session) -> bool:
        """Make `chat_id` the session's when nobody owns it; whether it is the session's now."""
        owner = await self.owner(chat_id)  # a chat's later messages: this one read only
        if owner is not None:
            return owner == session.hash
        database = self._db()
        row = {"chat_id": chat_id, "session_hash": session.hash, "created_at": utcnow()}
        if self._take is None:  # built once, run with parameters: every new chat comes here
            self._take = (
                database.insert(_OWNERS).on_conflict_do_nothing().returning(_OWNERS.c.session_hash)
            )
        taken = await database.unit(partial(_scalar, self._take, row))
        if taken is not None:
            return bool(taken == session.hash)
        return await self.owner(chat_id) == session.hash  # another request took it first

    async def owner(self, chat_id: str) -> str | None:
        """The hash of the session that owns `chat_id`; None when nobody has written to it."""
        found = await self._db().unit(partial(_scalar, _OWNER, {"o_chat": chat_id}))
        return None if found is None else str(found)

    async def owns(self, chat_id: str, session: Session) -> bool:
        return await self.owner(chat_id) == session.hash

    async def may_escalate(self, session: Session) -> bool:
        """One token from the session's escalation bucket."""
        s = self.settings
        bucket = f"webchat:escalate:{session.label}"
        return await self.buckets.take(bucket, s.escalation_burst, s.escalations_per_hour / 3600)

    # -- the key ------------------------------------------------------------------------------

    def _db(self) -> Database:
        if self._database is None:
            engine = self._engine()
            if engine is None:
                raise HTTPException(503, both("web_starting"))
            self._database = Database(engine)
        return self._database

    async def _signing_key(self) -> bytes:
        if self._key is not None:
            return self._key
        async with self._key_lock:
            if self._key is None:
                self._key = await self._stored_key()
        return self._key

    async def _stored_key(self) -> bytes:
        """The key in the database, made by the first replica that needed one."""
        database = self._db()
        row = {"name": _KEY_NAME, "value": secrets.token_hex(32), "created_at": utcnow()}
        statement = database.insert(SigningKey).values(row).on_conflict_do_nothing()
        async with database.sessions.begin() as db:
            await db.execute(statement)
            value = await db.scalar(select(SigningKey.value).where(SigningKey.name == _KEY_NAME))
        return bytes.fromhex(str(value))


def _sign(key: bytes, signed: str) -> str:
    digest = hmac.new(key, _PURPOSE + signed.encode(), "sha256").digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _scalar(statement: Any, parameters: dict[str, Any], conn: Connection) -> Any:
    """One statement's first column (`Database.unit` work: every chat request asks)."""
    return conn.scalar(statement, parameters)
