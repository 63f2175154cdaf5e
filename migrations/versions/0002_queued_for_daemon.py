"""Jobs the daemons may take: jobs.queued_for_daemon.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the flag; jobs that exist already were made by `run` and stay with it."""
    # A plain ADD COLUMN (no batch copy) works on SQLite too thanks to the default, and keeps
    # `--sql` (offline) mode possible.
    op.add_column(
        "jobs",
        sa.Column("queued_for_daemon", sa.Boolean(), nullable=False, server_default=sa.false()),
    )


def downgrade() -> None:
    """Drop the flag."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("queued_for_daemon")
