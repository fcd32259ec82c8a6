"""Replicas' heartbeats, and which replica answers each claimed message, so that another replica
takes over the unfinished turns of one whose heartbeat lapsed.

Follows 0012 (threads keep their chat type and opener).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "replicas",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beats", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_by", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_replicas")),
    )
    op.create_index(op.f("ix_replicas_state"), "replicas", ["state"])
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("replica", sa.String(length=64), nullable=True))
        batch.create_index(batch.f("ix_processed_events_replica"), ["replica"])


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_index(batch.f("ix_processed_events_replica"))
        batch.drop_column("replica")
    op.drop_index(op.f("ix_replicas_state"), table_name="replicas")
    op.drop_table("replicas")
