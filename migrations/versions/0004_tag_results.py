"""Imagga's answers kept by image hash and analysis, so no image is ever paid for twice.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00.000000

One new table, `tag_results`; nothing existing changes. `downgrade` drops it (the keywords
already recorded per photo stay in photo_phases).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create tag_results."""
    op.create_table(
        "tag_results",
        sa.Column("image_md5", sa.String(length=32), nullable=False),
        sa.Column("analysis", sa.String(length=200), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("image_md5", "analysis", name=op.f("pk_tag_results")),
    )


def downgrade() -> None:
    """Drop tag_results."""
    op.drop_table("tag_results")
