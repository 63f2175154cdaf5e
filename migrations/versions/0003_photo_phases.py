"""Per-photo progress of any stage in photo_phases; versioned job specs; jobs.profile_name.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01 09:00:00.000000

Every finished upload, downloaded edit and export, and every recorded failure, is carried over
from the fixed per-phase columns of `photos` to one `photo_phases` row per photo and phase. The
jobs' options become the versioned spec (`orchestrator.spec.JobSpec`), and the profile name
moves out of them into its own column. `downgrade` carries everything back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OUTPUT_PHASES = ("edit", "export")
_OLD_PHOTO_COLUMNS: list[tuple[str, Any]] = [
    ("uploaded_at", sa.DateTime(timezone=True)),
    *[
        (f"{phase}_{column}", kind)
        for phase in _OUTPUT_PHASES
        for column, kind in (
            ("output", sa.String(length=255)),
            ("size", sa.BigInteger()),
            ("md5", sa.String(length=32)),
            ("done_at", sa.DateTime(timezone=True)),
        )
    ],
    ("keywords", sa.JSON()),
    ("tagged_at", sa.DateTime(timezone=True)),
    ("delivered_url", sa.Text()),
    ("delivered_at", sa.DateTime(timezone=True)),
    ("failed_phase", sa.String(length=32)),
    ("failed_reason", sa.Text()),
]


def _photos_0002() -> sa.Table:
    return sa.Table(
        "photos",
        sa.MetaData(),
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column(
            "job_id",
            sa.String(length=32),
            sa.ForeignKey("jobs.id", name="fk_photos_job_id_jobs", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rel_path", sa.Text(), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns", sa.BigInteger(), nullable=False),
        sa.Column("md5", sa.String(length=32), nullable=True),
        *[sa.Column(name, kind, nullable=True) for name, kind in _OLD_PHOTO_COLUMNS],
        sa.PrimaryKeyConstraint("id", name="pk_photos"),
        sa.UniqueConstraint("job_id", "file_name", name="uq_photos_job_id_file_name"),
        sa.Index("ix_photos_job_id", "job_id"),
    )


def upgrade() -> None:
    """Create photo_phases, carry the photos' progress and the jobs' options across."""
    op.add_column("jobs", sa.Column("profile_name", sa.String(length=200), nullable=True))
    op.create_table(
        "photo_phases",
        sa.Column("photo_id", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=32), nullable=False),
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("md5", sa.String(length=32), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_photo_phases_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["photo_id"],
            ["photos.id"],
            name=op.f("fk_photo_phases_photo_id_photos"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("photo_id", "phase", name=op.f("pk_photo_phases")),
    )
    op.create_index(op.f("ix_photo_phases_job_id"), "photo_phases", ["job_id"], unique=False)
    op.execute(
        "INSERT INTO photo_phases (photo_id, phase, job_id, done_at) "
        "SELECT id, 'upload', job_id, uploaded_at FROM photos "
        "WHERE uploaded_at IS NOT NULL"
    )
    for phase in _OUTPUT_PHASES:
        op.execute(
            f"INSERT INTO photo_phases (photo_id, phase, job_id, output, size, md5, "
            f"done_at) SELECT id, '{phase}', job_id, {phase}_output, {phase}_size, "
            f"{phase}_md5, {phase}_done_at FROM photos WHERE {phase}_done_at IS NOT NULL"
        )
    failing = (
        "FROM photos p WHERE p.id = photo_phases.photo_id AND p.failed_phase = photo_phases.phase"
    )
    op.execute(
        f"UPDATE photo_phases SET failed_reason = (SELECT p.failed_reason {failing}) "
        f"WHERE EXISTS (SELECT 1 {failing})"
    )
    op.execute(
        "INSERT INTO photo_phases (photo_id, phase, job_id, failed_reason) "
        "SELECT p.id, p.failed_phase, p.job_id, p.failed_reason FROM photos p "
        "WHERE p.failed_phase IS NOT NULL AND NOT EXISTS (SELECT 1 FROM photo_phases x "
        "WHERE x.photo_id = p.id AND x.phase = p.failed_phase)"
    )
    # The table as 0002 left it, so that SQLite's batch copy needs no reflection (and `--sql`
    # offline mode keeps working).
    with op.batch_alter_table("photos", copy_from=_photos_0002()) as batch:
        for name, _kind in _OLD_PHOTO_COLUMNS:
            batch.drop_column(name)
    # The profile's name leaves the options for a column of its own; the options themselves
    # are read as a spec of version 0 (`JobSpec.from_stored`), so no JSON is rewritten here.
    name = (
        "json_extract(options, '$.profile_name')"
        if op.get_context().dialect.name == "sqlite"
        else "options->>'profile_name'"
    )
    op.execute(f"UPDATE jobs SET profile_name = {name}")


def downgrade() -> None:
    """Put the progress back into the photos' columns and the options into their old shape."""
    for name, kind in _OLD_PHOTO_COLUMNS:
        op.add_column("photos", sa.Column(name, kind, nullable=True))

    def phase_value(phase: str, column: str) -> str:
        return (
            f"(SELECT x.{column} FROM photo_phases x WHERE x.photo_id = photos.id "
            f"AND x.phase = '{phase}')"
        )

    op.execute(f"UPDATE photos SET uploaded_at = {phase_value('upload', 'done_at')}")
    for phase in _OUTPUT_PHASES:
        op.execute(
            f"UPDATE photos SET {phase}_output = {phase_value(phase, 'output')}, "
            f"{phase}_size = {phase_value(phase, 'size')}, "
            f"{phase}_md5 = {phase_value(phase, 'md5')}, "
            f"{phase}_done_at = {phase_value(phase, 'done_at')} "
            f"WHERE EXISTS (SELECT 1 FROM photo_phases x WHERE x.photo_id = photos.id "
            f"AND x.phase = '{phase}' AND x.done_at IS NOT NULL)"
        )
    failed = "FROM photo_phases x WHERE x.photo_id = photos.id AND x.failed_reason IS NOT NULL"
    op.execute(
        f"UPDATE photos SET failed_phase = (SELECT MIN(x.phase) {failed}), "
        f"failed_reason = (SELECT x.failed_reason {failed} ORDER BY x.phase LIMIT 1) "
        f"WHERE EXISTS (SELECT 1 {failed})"
    )
    op.drop_index(op.f("ix_photo_phases_job_id"), table_name="photo_phases")
    op.drop_table("photo_phases")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("profile_name")
