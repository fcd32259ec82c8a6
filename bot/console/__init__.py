"""The agents' console at /console: escalations, conversations, knowledge, figures.

Server-rendered (Jinja2 templates in `templates/`, plain forms): module-level routes, one
module per page group, that `routes.mount_console` puts on the server (`bot.server`). It owns
its tables (`tables.py`: agents and their sessions); `METADATA` is them, for the migrations.
"""

from __future__ import annotations

from bot.console.config import ConsoleSettings
from bot.console.tables import ConsoleBase

METADATA = ConsoleBase.metadata

__all__ = ["METADATA", "ConsoleSettings"]
