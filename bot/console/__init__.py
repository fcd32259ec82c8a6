"""The agents' console at /console: escalations, conversations, knowledge, figures.

Server-rendered (Jinja2, plain forms): module-level routes, one module per page group, that
`routes.mount_console` puts on the server (`bot.server`).
"""

from __future__ import annotations

from bot.console.config import ConsoleSettings

__all__ = ["ConsoleSettings"]
