"""A waiting job's safety-net poll as a time of its own, and the daemons' shared poll budget.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08 10:00:00.000000

A job waiting on Imagen used to be claimed, driven and released for each status poll, at about
27 transactions a poll, as often as its backoff said, however many jobs waited. Now its
`poll_at` says when its poll is due and its `wake_at` holds only the wait's deadline: the
daemons' poller takes the due polls, longest overdue first, as fast as the one budget in
`poll_budget` allows, in two transactions per batch. A partial index keeps the poller's reads
with the jobs that wait.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the column, its index and the budget's table with its one row."""
    op.add_column("jobs", sa.Column("poll_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(
        "ix_jobs_poll_at",
        "jobs",
        ["poll_at"],
        sqlite_where=sa.text("poll_at IS NOT NULL"),
        postgresql_where=sa.text("poll_at IS NOT NULL"),
    )
    budget = op.create_table(
        "poll_budget",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("next_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_poll_budget")),
    )
    op.bulk_insert(budget, [{"name": "imagen", "next_at": None}])


def downgrade() -> None:
    """Drop them."""
    op.drop_table("poll_budget")
    op.drop_index("ix_jobs_poll_at", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("poll_at")
