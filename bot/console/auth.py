"""Console sign-in: named agent accounts, throttled logins, server-side sessions, CSRF.

`Gate` turns the accounts (bot/console/accounts.py) and the throttle into what the routes need:
who is signed in, whether a form carries their CSRF token, and the login and logout steps.
The shared TEAMBOT_CONSOLE__PASSWORD of earlier versions only bootstraps the first admin.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.console.accounts import AccountError, Accounts, AgentRecord, Role, SignedIn
from bot.console.config import ConsoleSettings
from bot.console.throttle import Lockout, LoginThrottle

log = logging.getLogger(__name__)

COOKIE = "teambot_console"
LOGIN_COOKIE = "teambot_login"  # the sign-in form's CSRF token (bot/console/sign_in.py)
BOOTSTRAP_ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class LoginResult:
    agent: AgentRecord | None = None
    token: str = ""
    lockout: Lockout | None = None


class Gate:
    """Who may use the console; built once the database is up (`engine` returns it)."""

    def __init__(self, settings: ConsoleSettings, engine: Callable[[], AsyncEngine | None]) -> None:
        self._settings = settings
        self._engine = engine
        self._accounts: Accounts | None = None
        self._bootstrapped = False
        self._lock = asyncio.Lock()
        minutes = 60.0
        self.throttle = LoginThrottle(
            per_client=settings.login_attempts_per_client,
            overall=settings.login_attempts_overall,
            window=settings.login_window_minutes * minutes,
            lockout=settings.login_lockout_minutes * minutes,
        )
        self.problem = ""  # why nobody can sign in, for the "not set up" page

    async def accounts(self) -> Accounts | None:
        """The accounts, after bootstrapping the first admin from the old shared password."""
        if self._accounts is None:
            engine = self._engine()
            if engine is None:
                return None
            self._accounts = Accounts(engine)
        if not self._bootstrapped:
            async with self._lock:  # many first requests at once bootstrap once
                if not self._bootstrapped:
                    await self._bootstrap(self._accounts)
        return self._accounts

    async def _bootstrap(self, accounts: Accounts) -> None:
        password = self._settings.password.get_secret_value() if self._settings.password else ""
        existing = await accounts.count()
        self._bootstrapped, self.problem = True, ""
        if existing:
            if password:
                log.warning(
                    "console: TEAMBOT_CONSOLE__PASSWORD is ignored: named agent accounts exist "
                    "(teambot agents list); remove it from the environment"
                )
            return
        if not password:
            self.problem = "no_accounts"
            self._bootstrapped = False  # look again: `teambot agents add` may run meanwhile
            return
        try:
            await accounts.add(BOOTSTRAP_ADMIN, password, Role.ADMIN)
        except AccountError as error:
            if await accounts.count():  # another replica made it first
                return
            self.problem = f"bootstrap: {error}"
            log.error(
                "console: TEAMBOT_CONSOLE__PASSWORD cannot become the first admin (%s); set a "
                "longer one or run `teambot agents add NAME --role admin`",
                error,
            )
            return
        self.problem = ""
        log.warning(
            "console: created the admin account %r from TEAMBOT_CONSOLE__PASSWORD; add named "
            "agents with `teambot agents add NAME` and remove the shared password",
            BOOTSTRAP_ADMIN,
        )

    async def signed_in(self, request: Request) -> SignedIn | None:
        accounts = await self.accounts()
        if accounts is None:
            return None
        return await accounts.session(request.cookies.get(COOKIE))

    async def login(self, request: Request, name: str, password: str) -> LoginResult:
        accounts = await self.accounts()
        assert accounts is not None
        client = client_address(request)
        lockout = self.throttle.begin(client)
        if lockout is not None:
            log.warning("console: login refused for %s: locked out (%s)", client, lockout)
            return LoginResult(lockout=lockout)
        agent = await accounts.verify(name, password)
        if agent is None:
            log.info("console: failed login for %r from %s", name[:64], client)
            return LoginResult()
        self.throttle.succeeded(client)
        token = await accounts.start(agent, self._settings.session_hours, client)
        log.info("console: %s signed in from %s", agent.name, client)
        return LoginResult(agent=agent, token=token)


def client_address(request: Request) -> str:
    """The client's address as the server saw it (uvicorn applies trusted proxy headers)."""
    return request.client.host if request.client else "unknown"
