"""Attachments read in a thread: their text (and small files themselves) stay with the thread.

Numbered 0010 on its branch; it follows 0008 here and is renumbered on merge if needed.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "thread_attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("thread_id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("mime", sa.String(length=128), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["threads.id"],
            name=op.f("fk_thread_attachments_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_thread_attachments")),
    )
    op.create_index(op.f("ix_thread_attachments_thread_id"), "thread_attachments", ["thread_id"])
    op.create_index(op.f("ix_thread_attachments_created_at"), "thread_attachments", ["created_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_thread_attachments_created_at"), table_name="thread_attachments")
    op.drop_index(op.f("ix_thread_attachments_thread_id"), table_name="thread_attachments")
    op.drop_table("thread_attachments")
