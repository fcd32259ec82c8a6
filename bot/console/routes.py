"""The console's routes, one module per job, and `mount_console`, which puts them on the server.

Each page module holds module-level routes on its own router; what a route needs (the Console,
the agent signed in, an admin, a CSRF-checked form) it declares with `Depends` (bot/console/
deps.py). A new page adds its module here and, if it belongs in the navigation bar, to `NAV`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response

from bot.console import agents, faq, knowledge, sign_in, threads
from bot.console.deps import Console, Refused, same_origin

# Every route, the sign-in form included: a state-changing request from another site is refused
router = APIRouter(dependencies=[Depends(same_origin)])
for part in (sign_in, threads, faq, agents, knowledge):  # the order they are matched in
    router.include_router(part.router)


def mount_console(server: FastAPI, console: Console) -> None:
    """Serve the console's pages on `server`; every route finds `console` through `Depends`."""
    server.state.console = console
    server.add_exception_handler(Refused, refused)
    server.include_router(router)


async def refused(_: Request, error: Exception) -> Response:
    """A guard's answer (bot/console/deps.py), sent instead of the page."""
    if not isinstance(error, Refused):  # pragma: no cover - registered for Refused alone
        raise error
    return error.response
