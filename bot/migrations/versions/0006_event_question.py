"""The question and asker of each claimed event, for the audit record of a turn that never
finished (a crash mid-answer): the recovery sweeper stores it with its apology.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.add_column(sa.Column("question", sa.Text(), nullable=True))
        batch.add_column(sa.Column("asker_id", sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("processed_events") as batch:
        batch.drop_column("asker_id")
        batch.drop_column("question")
