"""Initial schema: jobs, photos, events and the callbacks inbox.

Revision ID: 0001
Revises:
Create Date: 2026-11-22 03:50:36.962566
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create the four tables as orchestrator.store.models defined them at this revision."""
    # Migrations spell out every type and name instead of importing the models, so they keep
    # meaning what they meant when written. UTCDateTime is DateTime(timezone=True) underneath.
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("edited_dir", sa.Text(), nullable=False),
        sa.Column("exported_dir", sa.Text(), nullable=False),
        sa.Column("image_type", sa.String(length=8), nullable=False),
        sa.Column("profile_key", sa.Integer(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=32), nullable=False),
        sa.Column("state_before_failure", sa.String(length=32), nullable=True),
        sa.Column("project_name", sa.String(length=100), nullable=False),
        sa.Column("project_uuid", sa.String(length=100), nullable=True),
        sa.Column("callback_secret_hash", sa.String(length=64), nullable=True),
        sa.Column("attempt_count", sa.Integer(), nullable=False),
        sa.Column("wake_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_owner", sa.String(length=200), nullable=True),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lease_epoch", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        sa.UniqueConstraint("callback_secret_hash", name=op.f("uq_jobs_callback_secret_hash")),
        sa.UniqueConstraint("project_name", name=op.f("uq_jobs_project_name")),
    )
    op.create_index("ix_jobs_source_image_type", "jobs", ["source", "image_type"])
    op.create_index(op.f("ix_jobs_state"), "jobs", ["state"])

    op.create_table(
        "photos",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("rel_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("edit_output", sa.String(length=255), nullable=True),
        sa.Column("edit_size", sa.BigInteger(), nullable=True),
        sa.Column("edit_md5", sa.String(length=32), nullable=True),
        sa.Column("edit_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("export_output", sa.String(length=255), nullable=True),
        sa.Column("export_size", sa.BigInteger(), nullable=True),
        sa.Column("export_md5", sa.String(length=32), nullable=True),
        sa.Column("export_done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("keywords", sa.JSON(), nullable=True),
        sa.Column("tagged_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered_url", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_phase", sa.String(length=32), nullable=True),
        sa.Column("failed_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_photos_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_photos")),
        sa.UniqueConstraint("job_id", "file_name", name="uq_photos_job_id_file_name"),
    )
    op.create_index(op.f("ix_photos_job_id"), "photos", ["job_id"])

    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("from_state", sa.String(length=32), nullable=True),
        sa.Column("to_state", sa.String(length=32), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_events_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_job_id"), "events", ["job_id"])

    op.create_table(
        "callbacks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("project_uuid", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_callbacks_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.UniqueConstraint(
            "project_uuid", "action", "status", name="uq_callbacks_project_uuid_action_status"
        ),
    )
    op.create_index(op.f("ix_callbacks_job_id"), "callbacks", ["job_id"])


def downgrade() -> None:
    """Drop the four tables (and their indexes with them), children before parents."""
    op.drop_table("callbacks")
    op.drop_table("events")
    op.drop_table("photos")
    op.drop_table("jobs")
