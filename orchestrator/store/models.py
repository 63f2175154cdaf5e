"""The database schema as SQLAlchemy 2 typed models: one schema for SQLite and Postgres."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    and_,
    false,
    literal_column,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from orchestrator.states import TERMINAL_STATES

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC timestamp on both databases (SQLite keeps no zone of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time as an aware UTC datetime (the only kind the store accepts)."""
    return datetime.now(UTC)


class Base(DeclarativeBase):
    """Declarative base carrying the naming convention the migrations rely on."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Shoot(Base):
    """What a photographer names and sees: one shoot folder's photos, edited by its jobs (one
    per Imagen project: a RAW one, a JPEG one, and the follow-ups for photos that came late),
    reviewed and delivered as one."""

    __tablename__ = "shoots"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text, index=True)
    """The shoot folder (its jobs' `source`); `--again` starts a new shoot of the same folder."""
    keywords: Mapped[list[str]] = mapped_column(JSON)
    """The shoot's own words (`--keyword`: the couple, the venue), for every photo of it."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Job(Base):
    """One Imagen project: a set of photos of one image type from one source folder."""

    __tablename__ = "jobs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    shoot_id: Mapped[str] = mapped_column(ForeignKey("shoots.id", ondelete="CASCADE"), index=True)
    """The shoot the job edits photos of."""
    name: Mapped[str] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(Text)
    edited_dir: Mapped[str] = mapped_column(Text)
    exported_dir: Mapped[str] = mapped_column(Text)
    image_type: Mapped[str] = mapped_column(String(8))
    profile_key: Mapped[int] = mapped_column(Integer)
    profile_name: Mapped[str | None] = mapped_column(String(200))
    options: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The job's spec (orchestrator.spec.JobSpec) as versioned JSON."""
    state: Mapped[str] = mapped_column(String(32), index=True)
    state_before_failure: Mapped[str | None] = mapped_column(String(32))
    project_name: Mapped[str] = mapped_column(String(100), unique=True)
    project_uuid: Mapped[str | None] = mapped_column(String(100))
    callback_secret_hash: Mapped[str | None] = mapped_column(String(64), unique=True)
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    wake_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    """When a job waiting on Imagen is due its safety-net status poll (the daemons' poller,
    within the shared budget); None: no poll pending. Its `wake_at` is then the wait's deadline."""
    lease_owner: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lease_epoch: Mapped[int] = mapped_column(Integer, default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    queued_for_daemon: Mapped[bool] = mapped_column(default=False, server_default=false())
    """Submitted to the daemons (`submit`, hot folder); `run` jobs stay with their command."""
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (Index("ix_jobs_source_image_type", "source", "image_type"),)


LIVE_JOB = Job.state.not_in([literal_column(f"'{state}'") for state in sorted(TERMINAL_STATES)])
"""A job with work left (in no terminal state). Written with its values inline, the same in the
indexes below and in the queries that use them: SQLite uses a partial index only for a query
that repeats its condition word for word, constants included."""

LIVE_DAEMON_JOB = and_(Job.queued_for_daemon == true(), LIVE_JOB)
"""A job the daemons still have work for."""

# The partial indexes' conditions are declared for SQLite only: a `postgresql_where` here would
# load Postgres's dialect in every command, at import. Migration 0006 gives both databases the
# same conditions, and `tests/integration/test_daemon_query_plans.py` sees them used on both.
Index("ix_jobs_live_daemon_wake_at", Job.wake_at, sqlite_where=LIVE_DAEMON_JOB)
"""The daemons' claim and next wake-up read only live daemon jobs: their cost follows the jobs
at work, not the season of finished ones the table keeps."""

Index("ix_jobs_poll_at", Job.poll_at, sqlite_where=Job.poll_at.is_not(None))
"""The poller reads only the jobs waiting for a status poll, longest overdue first."""

Index("ix_jobs_live_created_at", Job.created_at, sqlite_where=LIVE_JOB)
"""`status` lists every live job and the newest finished ones, newest first, at any size."""

Index("ix_jobs_created_at_id", Job.created_at, Job.id)
"""Job lists newest first, a page at a time (`/api/jobs`: keyset pagination)."""


class Photo(Base):
    """One source photo of a job: where it is and what was recorded of its content."""

    __tablename__ = "photos"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    rel_path: Mapped[str] = mapped_column(Text)
    file_name: Mapped[str] = mapped_column(String(255))
    size: Mapped[int] = mapped_column(BigInteger)
    mtime_ns: Mapped[int] = mapped_column(BigInteger)
    md5: Mapped[str | None] = mapped_column(String(32))

    __table_args__ = (UniqueConstraint("job_id", "file_name", name="uq_photos_job_id_file_name"),)


class PhotoPhase(Base):
    """What one stage did with one photo: done (with what it needs to verify or skip it later)
    or failed (with why). One row per photo and phase, for any stage."""

    __tablename__ = "photo_phases"

    photo_id: Mapped[int] = mapped_column(
        ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True
    )
    phase: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    output: Mapped[str | None] = mapped_column(Text)
    """The output's file name (downloads) or where the result went."""
    size: Mapped[int | None] = mapped_column(BigInteger)
    md5: Mapped[str | None] = mapped_column(String(32))
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    """What else the stage keeps for the photo (e.g. keywords and suggestions)."""
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    failed_reason: Mapped[str | None] = mapped_column(Text)
    """Why the phase keeps failing for this photo; cleared when it succeeds or is retried."""


FAILED = PhotoPhase.failed_reason.is_not(None)
"""A photo's phase with a failure recorded: the partial index below holds these rows alone, and
every query of failures repeats this condition."""
FAILED_PHASE = and_(FAILED, PhotoPhase.done_at.is_(None))
"""A photo's phase that failed for good (and has not succeeded since)."""

Index("ix_photo_phases_job_phase_done", PhotoPhase.job_id, PhotoPhase.phase, PhotoPhase.done_at)
"""A job's photos by phase, with when each was done: the grouped counts of every view (the
job page, `/api/jobs/<id>`, `status`) read this index alone, never the rows, however many
photos the job has."""

Index(
    "ix_photo_phases_failed",
    PhotoPhase.job_id,
    PhotoPhase.photo_id,
    PhotoPhase.phase,
    PhotoPhase.done_at,
    sqlite_where=FAILED,
)
"""The phases with a failure, which views count and list first: read as few as they are."""


class Event(Base):
    """Append-only history of a job: transitions, retries, resumes, callbacks, errors."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class Callback(Base):
    """The webhook inbox: one row per distinct (project, action, status) Imagen told us."""

    __tablename__ = "callbacks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    project_uuid: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str | None] = mapped_column(
        ForeignKey("jobs.id", ondelete="CASCADE"), index=True
    )
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    __table_args__ = (
        UniqueConstraint(
            "project_uuid", "action", "status", name="uq_callbacks_project_uuid_action_status"
        ),
    )


class TagResult(Base):
    """What Imagga answered for one image and one analysis, kept so it is never paid twice.

    Keyed by the md5 of the exact image sent (the downscaled copy) and the analysis with its
    parameters (`tags:en,de`, `categories:personal_photos`); shared by every job.
    """

    __tablename__ = "tag_results"

    image_md5: Mapped[str] = mapped_column(String(32), primary_key=True)
    analysis: Mapped[str] = mapped_column(String(200), primary_key=True)
    result: Mapped[list[Any]] = mapped_column(JSON)
    """The answer as stored: `[{"tag", "confidence"}]` or `[{"name", "confidence"}]`."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Refusal(Base):
    """A hot-folder drop that could not become a job, and why; gone once it becomes one."""

    __tablename__ = "refusals"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    refused_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    __table_args__ = (UniqueConstraint("source", name="uq_refusals_source"),)


class PollBudget(Base):
    """The status polls every daemon sharing this database may send Imagen, as one token bucket.

    One row (`imagen`): `next_at` is when the bucket is next empty-and-refilled (the theoretical
    arrival time of a generic cell rate algorithm); a grant moves it on by `polls / rate`.
    """

    __tablename__ = "poll_budget"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    next_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
