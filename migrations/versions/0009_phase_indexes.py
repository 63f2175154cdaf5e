"""Indexes of photo phases: a job's counts read an index, never its rows.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 18:00:00.000000

Every view of a job (its page, `/api/jobs/<id>`, `status`, `history`) counts its photos per
phase: done, and failed for good. Over `ix_photo_phases_job_id` each count fetched every row of
the job from the table, 60,000 of them for a 20,000-photo job. `ix_photo_phases_job_phase_done`
(job, phase, when done) answers the done counts alone and takes the old index's place (its first
column serves the job's own lookups and deletes). `ix_photo_phases_failed` holds only the rows
with a failure recorded, so the failed counts and lists read only those. Its condition is
written word for word as the queries write it (SQLite matches partial indexes only so).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_FAILED = "failed_reason IS NOT NULL"


def upgrade() -> None:
    """Create the two indexes, then drop the one they replace."""
    op.create_index(
        "ix_photo_phases_job_phase_done", "photo_phases", ["job_id", "phase", "done_at"]
    )
    op.create_index(
        "ix_photo_phases_failed",
        "photo_phases",
        ["job_id", "photo_id", "phase", "done_at"],
        sqlite_where=sa.text(_FAILED),
        postgresql_where=sa.text(_FAILED),
    )
    op.drop_index("ix_photo_phases_job_id", table_name="photo_phases")


def downgrade() -> None:
    """The job's index back, the two dropped."""
    op.create_index("ix_photo_phases_job_id", "photo_phases", ["job_id"])
    op.drop_index("ix_photo_phases_failed", table_name="photo_phases")
    op.drop_index("ix_photo_phases_job_phase_done", table_name="photo_phases")
