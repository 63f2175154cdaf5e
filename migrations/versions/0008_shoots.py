"""The shoot: what a photographer names, holding its jobs (one per Imagen project).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:00:00.000000

A folder with RAW and JPEG used to be two jobs and nothing tied them together: two reviews, two
deliveries. `shoots` holds what the jobs of one shoot share (its name, folder and own keywords)
and `jobs.shoot_id` names each job's shoot. Existing jobs are grouped by their folder: every
job ever made from one folder joins that folder's one shoot, named after the folder and as old
as its first job.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _jobs_0007() -> sa.Table:
    """`jobs` as 0007 left it, with the `shoot_id` just added: SQLite's batch copy then needs no
    reflection (and `--sql` offline mode keeps working)."""
    live = "state NOT IN ('cancelled', 'completed', 'failed')"
    return sa.Table(
        "jobs",
        sa.MetaData(),
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("edited_dir", sa.Text(), nullable=False),
        sa.Column("exported_dir", sa.Text(), nullable=False),
        sa.Column("image_type", sa.String(8), nullable=False),
        sa.Column("profile_key", sa.Integer(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("state_before_failure", sa.String(32)),
        sa.Column("project_name", sa.String(100), nullable=False),
        sa.Column("project_uuid", sa.String(100)),
        sa.Column("callback_secret_hash", sa.String(64)),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("wake_at", sa.DateTime(timezone=True)),
        sa.Column("lease_owner", sa.String(200)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("queued_for_daemon", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("profile_name", sa.String(200)),
        sa.Column("poll_at", sa.DateTime(timezone=True)),
        sa.Column("shoot_id", sa.String(32)),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("callback_secret_hash", name="uq_jobs_callback_secret_hash"),
        sa.UniqueConstraint("project_name", name="uq_jobs_project_name"),
        sa.Index("ix_jobs_source_image_type", "source", "image_type"),
        sa.Index("ix_jobs_state", "state"),
        sa.Index(
            "ix_jobs_live_daemon_wake_at",
            "wake_at",
            sqlite_where=sa.text(f"queued_for_daemon = 1 AND ({live})"),
        ),
        sa.Index("ix_jobs_live_created_at", "created_at", sqlite_where=sa.text(live)),
        sa.Index("ix_jobs_created_at_id", "created_at", "id"),
        sa.Index("ix_jobs_poll_at", "poll_at", sqlite_where=sa.text("poll_at IS NOT NULL")),
    )


def upgrade() -> None:
    """Add the table, give every existing job the shoot of its folder, then require one."""
    op.create_table(
        "shoots",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("name", sa.String(300), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("keywords", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shoots")),
    )
    op.create_index("ix_shoots_source", "shoots", ["source"])
    op.add_column("jobs", sa.Column("shoot_id", sa.String(32), nullable=True))
    # One shoot per folder, in plain SQL (offline mode writes it too): a random id, the
    # folder's last name (the part after its last "/"), as old as the folder's first job.
    if op.get_context().dialect.name == "sqlite":
        new_id = "lower(hex(randomblob(16)))"
        folder_name = "replace(source, rtrim(source, replace(source, '/', '')), '')"
    else:
        new_id = "md5(random()::text || source)"
        folder_name = "regexp_replace(source, '^.*/', '')"
    op.execute(
        "INSERT INTO shoots (id, name, source, keywords, created_at) "
        f"SELECT {new_id}, substr(coalesce(nullif({folder_name}, ''), source), 1, 300), "
        "source, '[]', min(created_at) FROM jobs GROUP BY source"
    )
    op.execute(
        "UPDATE jobs SET shoot_id = (SELECT s.id FROM shoots s WHERE s.source = jobs.source)"
    )
    with op.batch_alter_table("jobs", copy_from=_jobs_0007()) as batch:
        batch.alter_column("shoot_id", existing_type=sa.String(32), nullable=False)
        batch.create_foreign_key(
            op.f("fk_jobs_shoot_id_shoots"), "shoots", ["shoot_id"], ["id"], ondelete="CASCADE"
        )
        batch.create_index("ix_jobs_shoot_id", ["shoot_id"])


def downgrade() -> None:
    """Drop the jobs' shoot and the table (the jobs stay, as before: grouped by folder)."""
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_shoot_id")
        batch.drop_constraint(op.f("fk_jobs_shoot_id_shoots"), type_="foreignkey")
        batch.drop_column("shoot_id")
    op.drop_index("ix_shoots_source", table_name="shoots")
    op.drop_table("shoots")
