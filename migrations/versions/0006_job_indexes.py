"""Indexes of live jobs and of jobs by age: claims, wake-ups and lists that do not grow with
the season.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 10:00:00.000000

Every daemon claims due jobs and looks for the next wake-up every few seconds. Both read only
live daemon jobs, but `state NOT IN (...)` cannot use `ix_jobs_state`, so each read scanned the
whole table, finished jobs included. A partial index over the live daemon jobs, keyed by
`wake_at`, keeps their cost with the jobs at work. Its condition is written with its values
inline, word for word as the queries write it (SQLite matches partial indexes only so).
`status` lists the live jobs and the newest finished ones, and `/api/jobs` pages through jobs
newest first: a partial index of live jobs by creation, and one of every job by (creation, id).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_LIVE = "state NOT IN ('cancelled', 'completed', 'failed')"
_SQLITE = f"queued_for_daemon = 1 AND ({_LIVE})"
_POSTGRES = f"queued_for_daemon = true AND ({_LIVE})"


def upgrade() -> None:
    """Create the indexes."""
    op.create_index(
        "ix_jobs_live_daemon_wake_at",
        "jobs",
        ["wake_at"],
        sqlite_where=sa.text(_SQLITE),
        postgresql_where=sa.text(_POSTGRES),
    )
    op.create_index(
        "ix_jobs_live_created_at",
        "jobs",
        ["created_at"],
        sqlite_where=sa.text(_LIVE),
        postgresql_where=sa.text(_LIVE),
    )
    op.create_index("ix_jobs_created_at_id", "jobs", ["created_at", "id"])


def downgrade() -> None:
    """Drop them."""
    op.drop_index("ix_jobs_created_at_id", table_name="jobs")
    op.drop_index("ix_jobs_live_created_at", table_name="jobs")
    op.drop_index("ix_jobs_live_daemon_wake_at", table_name="jobs")
