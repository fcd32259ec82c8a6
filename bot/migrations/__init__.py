"""The schema's migrations: Alembic scripts in `versions/`, run through `env.py` by bot/db.py.

Each package that owns tables exports them as its `METADATA` (a platform's in its record); this
collects them for autogenerate and the schema drift test, and reaches into no package.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from bot.console import METADATA as CONSOLE
from bot.platforms import PLATFORMS
from engine import METADATA as ENGINE
from knowledge import FILES_METADATA as KNOWLEDGE_FILES
from knowledge import METADATA as KNOWLEDGE

TARGET_METADATA: list[MetaData] = [
    ENGINE,
    KNOWLEDGE,
    KNOWLEDGE_FILES,
    CONSOLE,
    *(platform.metadata for platform in PLATFORMS if platform.metadata is not None),
]
