"""Hot-folder drops that could not become jobs: refusals.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 10:00:00.000000

A refused drop (duplicate names, only a video, no profile for its photos) used to be visible
only in the daemon's log; the table lets `status`, `/api/jobs` and the web page show it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the table, empty: earlier refusals were only logged."""
    # Types and names spelled out, as in 0001: UTCDateTime is DateTime(timezone=True).
    op.create_table(
        "refusals",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refusals")),
        sa.UniqueConstraint("source", name=op.f("uq_refusals_source")),
    )


def downgrade() -> None:
    """Drop the table."""
    op.drop_table("refusals")
