"""Named agent accounts (admin | agent) with argon2 password hashes, and server-side sessions.

A session cookie is a random token; the database keeps only its SHA-256, so a leaked database
holds no usable cookie. Logging out deletes the session; a password change deletes all of the
agent's sessions: both take effect on every replica at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import secrets
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from bot.console.tables import Agent, ConsoleSession
from knowledge.timestamps import utcnow

_hasher = PasswordHasher()
# Verifying against this when the name is unknown costs the same time as a real check,
# so response times do not tell which names exist.
_DUMMY_HASH = _hasher.hash(secrets.token_hex(16))
MIN_PASSWORD = 10
NAME_CHARS = 64
# Han ideographs (and their extensions and compatibility forms), kana, Hangul syllables
_CJK = re.compile(
    r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
    r"\u3041-\u3096\u30a1-\u30fa\u30fc\uac00-\ud7a3\u00b7\u30fb]"
)


class Role(StrEnum):
    ADMIN = "admin"  # everything, plus agent accounts and knowledge decisions
    AGENT = "agent"  # escalations, conversations, replies


class AccountError(ValueError):
    """A request the accounts cannot honour, worded for the person who made it."""


@dataclass(frozen=True, slots=True)
class AgentRecord:
    name: str
    role: Role
    created_at: datetime
    password_changed_at: datetime


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A valid console session: who, with what role, and the token's CSRF companion."""

    agent: str
    role: Role
    token_hash: str
    expires_at: datetime

    @property
    def csrf(self) -> str:
        return hmac.new(b"teambot-console-csrf", self.token_hash.encode(), "sha256").hexdigest()

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf.encode())

    @property
    def admin(self) -> bool:
        return self.role is Role.ADMIN


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccountError(
            f"密码至少 {MIN_PASSWORD} 个字符 / The password needs at least {MIN_PASSWORD} characters"
        )


def check_name(name: str) -> str:
    """The name as it is kept (NFKC: full-width letters become ASCII), or AccountError.

    Refused: control, zero-width and direction characters, and letters of scripts that look
    like Latin ones (Cyrillic "а" in "аdmin", Greek, accented look-alikes): a name is ASCII
    letters, digits, spaces and `. _ - @`, and Chinese, Japanese or Korean characters."""
    cleaned = unicodedata.normalize("NFKC", name).strip()
    if not cleaned or len(cleaned) > NAME_CHARS:
        raise AccountError(
            f"名字需为 1-{NAME_CHARS} 个字符 / A name is 1-{NAME_CHARS} characters on one line"
        )
    odd = [ch for ch in cleaned if not _name_char(ch)]
    if odd:
        shown = ", ".join(f"U+{ord(ch):04X}" for ch in dict.fromkeys(odd))
        raise AccountError(
            f"名字含有不允许的字符 / The name holds characters that can pass for others or hide "
            f"({shown}): use ASCII letters, digits, spaces and . _ - @, or Chinese characters"
        )
    return cleaned


def name_key(name: str) -> str:
    """What makes two names the same one: NFKC, case folded (Mei, MEI and ｍｅｉ are one)."""
    return unicodedata.normalize("NFKC", name).strip().casefold()[:NAME_CHARS]


def _name_char(char: str) -> bool:
    if char.isascii():
        return char.isalnum() or char in " ._-@"
    return bool(_CJK.match(char))


class Accounts:
    """Agent accounts and sessions in the teambot database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    # -- accounts -----------------------------------------------------------------------------

    async def agents(self) -> list[AgentRecord]:
        async with self._sessions() as session:
            rows = (await session.scalars(select(Agent).order_by(Agent.name))).all()
        return [_record(r) for r in rows]

    async def count(self) -> int:
        async with self._sessions() as session:
            return int(await session.scalar(select(func.count()).select_from(Agent)) or 0)

    async def add(self, name: str, password: str, role: Role = Role.AGENT) -> AgentRecord:
        name = check_name(name)
        check_password(password)
        digest = await asyncio.to_thread(_hasher.hash, password)
        now = utcnow()
        row = Agent(
            name=name,
            name_key=name_key(name),
            role=Role(role).value,
            password_hash=digest,
            created_at=now,
            password_changed_at=now,
        )
        try:
            async with self._sessions.begin() as session:
                session.add(row)
        except IntegrityError as error:
            raise AccountError(
                f"已有名为 {name} 的客服（不区分大小写） / An agent named {name} exists "
                "(names are the same whatever their case)"
            ) from error
        return _record(row)

    async def set_password(self, name: str, password: str) -> int:
        """A new password; every session of the agent ends. Returns how many ended."""
        check_password(password)
        digest = await asyncio.to_thread(_hasher.hash, password)
        async with self._sessions.begin() as session:
            row = await _find(session, name)
            if row is None:
                raise AccountError(f"没有名为 {name} 的客服 / No agent named {name}")
            row.password_hash, row.password_changed_at = digest, utcnow()
            ended = await session.execute(
                delete(ConsoleSession).where(ConsoleSession.agent == row.name)
            )
        return int(ended.rowcount or 0)  # type: ignore[attr-defined]

    async def remove(self, name: str) -> None:
        async with self._sessions.begin() as session:
            row = await _find(session, name)
            if row is None:
                raise AccountError(f"没有名为 {name} 的客服 / No agent named {name}")
            await session.execute(delete(ConsoleSession).where(ConsoleSession.agent == row.name))
            await session.delete(row)

    async def verify(self, name: str, password: str) -> AgentRecord | None:
        """The agent when the password is theirs (argon2 on a worker thread), else None. The
        name is matched as `name_key` makes it: "MEI" signs in as Mei."""
        async with self._sessions() as session:
            row = await _find(session, name)
        digest = row.password_hash if row is not None else _DUMMY_HASH
        try:
            await asyncio.to_thread(_hasher.verify, digest, password)
        except (VerificationError, InvalidHashError):
            return None
        return _record(row) if row is not None else None

    # -- sessions -----------------------------------------------------------------------------

    async def start(self, agent: AgentRecord, hours: float, client: str) -> str:
        """A new session for `agent`; returns the cookie value (never stored as such)."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        async with self._sessions.begin() as session:
            session.add(
                ConsoleSession(
                    token_hash=_token_hash(token),
                    agent=agent.name,
                    created_at=now,
                    expires_at=now + timedelta(hours=hours),
                    client=client[:64],
                )
            )
            await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at < now))
        return token

    async def session(self, token: str | None) -> SignedIn | None:
        """The signed-in agent for a cookie; None when unknown, ended or expired."""
        if not token or len(token) > 200:
            return None
        digest = _token_hash(token)
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(ConsoleSession, Agent)
                    .join(Agent, Agent.name == ConsoleSession.agent)
                    .where(ConsoleSession.token_hash == digest)
                )
            ).first()
        if row is None:
            return None
        found, agent = row
        if found.expires_at <= utcnow():
            return None
        return SignedIn(agent.name, Role(agent.role), digest, found.expires_at)

    async def end(self, signed_in: SignedIn) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                delete(ConsoleSession).where(ConsoleSession.token_hash == signed_in.token_hash)
            )


async def _find(session: AsyncSession, name: str) -> Agent | None:
    found = await session.scalars(select(Agent).where(Agent.name_key == name_key(name)))
    return found.first()


def _record(row: Agent) -> AgentRecord:
    return AgentRecord(row.name, Role(row.role), row.created_at, row.password_changed_at)
