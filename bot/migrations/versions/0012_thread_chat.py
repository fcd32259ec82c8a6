"""Threads remember their chat type and who opened them, so the core can keep the windows of a
platform without threads (DingTalk: an asker's latest thread in a chat, while it is not idle)
and knows a one-to-one chat from a group after a restart.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("threads") as batch:
        batch.add_column(sa.Column("chat_type", sa.String(16), nullable=True))
        batch.add_column(sa.Column("asker_id", sa.String(255), nullable=True))
    op.create_index("ix_threads_asker", "threads", ["platform", "tenant", "chat_id", "asker_id"])
    # a thread's opener is who asked its first turn: conversations going on at the upgrade keep
    # their window (the chat type of old threads stays unknown)
    op.execute(
        "UPDATE threads SET asker_id = (SELECT turns.asker_id FROM turns"
        " WHERE turns.thread_id = threads.id ORDER BY turns.id LIMIT 1)"
    )


def downgrade() -> None:
    op.drop_index("ix_threads_asker", table_name="threads")
    with op.batch_alter_table("threads") as batch:
        batch.drop_column("asker_id")
        batch.drop_column("chat_type")
