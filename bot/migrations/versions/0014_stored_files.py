"""Files kept for every replica: table stored_files (console uploads' bytes, knowledge/files),
and where an attachment's bytes are when an object store keeps them (thread_attachments.stored_key).

Follows 0013 (the replicas' heartbeats).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stored_files",
        sa.Column("key", sa.String(length=512), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("modified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_stored_files")),
    )
    with op.batch_alter_table("thread_attachments") as batch:
        batch.add_column(sa.Column("stored_key", sa.String(length=512), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("thread_attachments") as batch:
        batch.drop_column("stored_key")
    op.drop_table("stored_files")
