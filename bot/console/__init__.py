"""The agents' console at /console: escalations, conversations, knowledge, figures.

Server-rendered (Jinja2, plain forms); `routes.console_router` is mounted by `bot.server`.
"""

from __future__ import annotations

from bot.console.config import ConsoleSettings

__all__ = ["ConsoleSettings"]
