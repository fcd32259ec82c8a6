"""Web chat sessions (who owns each chat, the key that signs sessions) and agent names that are
unique whatever their case.

Web chats from before sessions get an owner no session has, so nobody can take them over by
knowing their ids. Agent names get `name_key` (NFKC, case folded); should two existing names
differ only in case, the later one's key keeps its own spelling, and the accounts stay usable.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    owners = op.create_table(
        "web_chat_owners",
        sa.Column("chat_id", sa.String(length=255), nullable=False),
        sa.Column("session_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("chat_id", name=op.f("pk_web_chat_owners")),
    )
    op.create_index(op.f("ix_web_chat_owners_session_hash"), "web_chat_owners", ["session_hash"])
    op.create_table(
        "web_chat_keys",
        sa.Column("name", sa.String(length=32), nullable=False),
        sa.Column("value", sa.String(length=128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_web_chat_keys")),
    )
    connection = op.get_bind()
    now = datetime.now(UTC)
    legacy = connection.execute(
        sa.text("SELECT DISTINCT chat_id FROM threads WHERE platform = 'web'")
    ).scalars()
    op.bulk_insert(
        owners, [{"chat_id": chat, "session_hash": "-", "created_at": now} for chat in legacy]
    )
    with op.batch_alter_table("console_agents") as batch:
        batch.add_column(sa.Column("name_key", sa.String(length=64), nullable=True))
    taken: set[str] = set()
    rows = connection.execute(sa.text("SELECT name FROM console_agents ORDER BY created_at, name"))
    for (name,) in rows.all():
        key = unicodedata.normalize("NFKC", name).strip().casefold()[:64]
        key = name if key in taken else key
        taken.add(key)
        connection.execute(
            sa.text("UPDATE console_agents SET name_key = :key WHERE name = :name"),
            {"key": key, "name": name},
        )
    with op.batch_alter_table("console_agents") as batch:
        batch.alter_column("name_key", existing_type=sa.String(length=64), nullable=False)
        batch.create_unique_constraint(op.f("uq_console_agents_name_key"), ["name_key"])


def downgrade() -> None:
    with op.batch_alter_table("console_agents") as batch:
        batch.drop_constraint(op.f("uq_console_agents_name_key"), type_="unique")
        batch.drop_column("name_key")
    op.drop_table("web_chat_keys")
    op.drop_index(op.f("ix_web_chat_owners_session_hash"), table_name="web_chat_owners")
    op.drop_table("web_chat_owners")
