"""`teambot agents add/passwd/remove/list`: the console's named accounts from a shell.

Runs against the configured database (migrating it first, as `teambot serve` would), so the
first admin can be created before the server ever starts, and works while it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from bot.console.accounts import AccountError, Accounts, AgentRecord, Role
from bot.db import upgrade_async
from engine.store.database import create_engine

T = TypeVar("T")


async def _with_accounts(url: str, work: Callable[[Accounts], Awaitable[T]]) -> T:
    await upgrade_async(url)
    engine = create_engine(url)
    try:
        return await work(Accounts(engine))
    finally:
        await engine.dispose()


async def add(url: str, name: str, password: str, role: Role) -> AgentRecord:
    return await _with_accounts(url, lambda accounts: accounts.add(name, password, role))


async def passwd(url: str, name: str, password: str) -> int:
    """The new password; returns how many sessions of the agent it ended."""
    return await _with_accounts(url, lambda accounts: accounts.set_password(name, password))


async def remove(url: str, name: str) -> None:
    await _with_accounts(url, lambda accounts: accounts.remove(name))


async def listing(url: str) -> list[AgentRecord]:
    return await _with_accounts(url, lambda accounts: accounts.agents())


__all__ = ["AccountError", "Role", "add", "listing", "passwd", "remove"]
