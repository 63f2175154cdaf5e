"""Every read and write of job state, each write one named statement guarded by what it expects.

State writes check the expected state and the lease (owner and epoch) in their WHERE clause and
fail loudly when no row matched: a worker that lost its lease cannot overwrite newer state.
"""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Update,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from orchestrator.store.db import create_engine
from orchestrator.store.models import Event, Job, Photo, utcnow
from orchestrator.workflow.states import TERMINAL_STATES, JobState, check_transition


class JobNotFound(LookupError):
    """No job matches the id (or id prefix) given."""


class LeaseHeld(RuntimeError):
    """Another live process drives this job right now."""


class StaleLease(RuntimeError):
    """A write was refused because this worker no longer holds the job's lease (fencing)."""


class StateConflict(RuntimeError):
    """The job is not in the state the write expected."""


@dataclass(frozen=True)
class NewPhoto:
    """A photo found in the shoot folder, as it is first recorded."""

    rel_path: str
    file_name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class RecordedPhoto:
    """A photo as its source file was recorded: what planning compares with the folder."""

    rel_path: str
    file_name: str
    size: int
    mtime_ns: int
    md5: str | None


@dataclass(frozen=True)
class NewJob:
    """A job as it is first recorded, before anything was sent to Imagen."""

    id: str
    name: str
    source: str
    edited_dir: str
    exported_dir: str
    image_type: str
    profile_key: int
    options: dict[str, Any]
    project_name: str


@dataclass(frozen=True)
class Lease:
    """The right to drive one job: every write made under it names owner and epoch."""

    job_id: str
    owner: str
    epoch: int


def process_owner() -> str:
    """A lease owner name for this process: host, pid and a random tag."""
    return f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"


def _owner_is_dead_local_process(owner: str) -> bool:
    """Whether a lease owner names a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _holds(lease: Lease) -> ColumnElement[bool]:
    return and_(Job.id == lease.job_id, Job.lease_owner == lease.owner,
                Job.lease_epoch == lease.epoch)


class Store:
    """The job database: named, guarded statements over one async engine."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str) -> Store:
        """A store over a new engine for `url` (the schema must already exist)."""
        return cls(create_engine(url))

    async def close(self) -> None:
        """Close every connection of the engine."""
        await self.engine.dispose()

    # ---- reads -------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job:
        """The job with this exact id."""
        async with self._sessions() as session:
            job = await session.get(Job, job_id)
        if job is None:
            raise JobNotFound(f"no job {job_id}")
        return job

    async def resolve_job(self, ref: str) -> Job:
        """The job whose id is `ref` or starts with it (at least 4 characters, unambiguous)."""
        ref = ref.strip().lower()
        if len(ref) < 4:
            raise JobNotFound(f"job id {ref!r} is too short: give at least 4 characters")
        async with self._sessions() as session:
            jobs = list((await session.scalars(
                select(Job).where(Job.id.startswith(ref, autoescape=True)).limit(2))).all())
        if not jobs:
            raise JobNotFound(f"no job matches {ref!r}; `orchestrator status` lists them")
        if len(jobs) > 1:
            raise JobNotFound(f"{ref!r} matches several jobs; give more of the id")
        return jobs[0]

    async def jobs_for_source(self, source: str) -> list[Job]:
        """Every job ever made from this source folder, newest first."""
        async with self._sessions() as session:
            return list((await session.scalars(
                select(Job).where(Job.source == source).order_by(Job.created_at.desc()))).all())

    async def list_jobs(self) -> list[tuple[Job, int]]:
        """Every job with its photo count, newest first."""
        counts = (select(Photo.job_id, func.count().label("n"))
                  .group_by(Photo.job_id).subquery())
        async with self._sessions() as session:
            rows = (await session.execute(
                select(Job, func.coalesce(counts.c.n, 0))
                .outerjoin(counts, counts.c.job_id == Job.id)
                .order_by(Job.created_at.desc()))).all()
        return [(job, int(n)) for job, n in rows]

    async def photos(self, job_id: str) -> list[Photo]:
        """The job's photos in a stable order."""
        async with self._sessions() as session:
            return list((await session.scalars(
                select(Photo).where(Photo.job_id == job_id).order_by(Photo.id))).all())

    async def recorded_photos(self, job_id: str) -> list[RecordedPhoto]:
        """The job's photos as files, without loading whole rows (a fraction of `photos`)."""
        async with self.engine.connect() as conn:
            rows = (await conn.execute(
                select(Photo.rel_path, Photo.file_name, Photo.size, Photo.mtime_ns, Photo.md5)
                .where(Photo.job_id == job_id).order_by(Photo.id))).all()
        return [RecordedPhoto(*row) for row in rows]

    async def events(self, job_id: str) -> list[Event]:
        """The job's history, oldest first."""
        async with self._sessions() as session:
            return list((await session.scalars(
                select(Event).where(Event.job_id == job_id).order_by(Event.id))).all())

    async def entered_state_at(self, job_id: str, state: JobState) -> datetime | None:
        """When the job last moved into `state` (a transition or a retry), if it ever did."""
        async with self.engine.connect() as conn:
            return (await conn.execute(select(func.max(Event.at)).where(
                Event.job_id == job_id, Event.to_state == state.value))).scalar_one()

    # ---- creation ----------------------------------------------------------------------

    async def create_job(self, job: NewJob, photos: Sequence[NewPhoto]) -> None:
        """Record a new queued job and its photos in one transaction."""
        now = utcnow()
        async with self.engine.begin() as conn:
            await conn.execute(insert(Job).values(
                id=job.id, name=job.name, source=job.source, edited_dir=job.edited_dir,
                exported_dir=job.exported_dir, image_type=job.image_type,
                profile_key=job.profile_key, options=job.options,
                state=JobState.QUEUED.value, project_name=job.project_name, attempt_count=0,
                lease_epoch=0, cancel_requested=False, created_at=now, updated_at=now))
            if photos:
                await conn.execute(insert(Photo), [
                    {"job_id": job.id, "rel_path": p.rel_path, "file_name": p.file_name,
                     "size": p.size, "mtime_ns": p.mtime_ns} for p in photos])
            await _event(conn, job.id, "created", f"job created with {len(photos)} photos",
                         to_state=JobState.QUEUED.value)

    async def add_photos(self, lease: Lease, photos: Sequence[NewPhoto]) -> None:
        """Add photos to a job that has not uploaded yet (new files found on resume)."""
        async with self.engine.begin() as conn:
            await _require_lease(conn, lease)
            await conn.execute(insert(Photo), [
                {"job_id": lease.job_id, "rel_path": p.rel_path, "file_name": p.file_name,
                 "size": p.size, "mtime_ns": p.mtime_ns} for p in photos])

    async def remove_photos(self, lease: Lease, photo_ids: Sequence[int]) -> None:
        """Forget photos that vanished from the folder before they were uploaded."""
        async with self.engine.begin() as conn:
            await _require_lease(conn, lease)
            await conn.execute(delete(Photo).where(
                Photo.job_id == lease.job_id, Photo.id.in_(photo_ids),
                Photo.uploaded_at.is_(None)))

    # ---- leases ------------------------------------------------------------------------

    async def claim(self, job_id: str, owner: str, ttl: float) -> Lease:
        """Take the job's lease: free, expired, or left by a dead process of this host."""
        now = utcnow()
        job = await self.get_job(job_id)
        claimable = or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)
        if job.lease_owner and job.lease_owner != owner and \
                _owner_is_dead_local_process(job.lease_owner):
            claimable = or_(claimable, Job.lease_owner == job.lease_owner)
        async with self.engine.begin() as conn:
            epoch = (await conn.execute(
                update(Job).where(Job.id == job_id, claimable)
                .values(lease_owner=owner, lease_expires_at=now + timedelta(seconds=ttl),
                        lease_epoch=Job.lease_epoch + 1)
                .returning(Job.lease_epoch))).scalar_one_or_none()
            if epoch is None:
                raise LeaseHeld(
                    f"job {job_id[:8]} is being driven by {job.lease_owner} (lease until "
                    f"{_fmt(job.lease_expires_at)}); wait for it or stop that process")
            if job.lease_owner and job.lease_owner != owner:
                await _event(conn, job_id, "lease", "lease taken over from a stopped process",
                             data={"previous_owner": job.lease_owner, "epoch": epoch})
        return Lease(job_id, owner, int(epoch))

    async def renew(self, lease: Lease, ttl: float) -> bool:
        """Extend the lease; False if it was lost (taken over)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(Job).where(_holds(lease)).values(
                lease_expires_at=utcnow() + timedelta(seconds=ttl)))
        return result.rowcount == 1

    async def release(self, lease: Lease) -> None:
        """Give the lease back (no-op if it was already lost)."""
        async with self.engine.begin() as conn:
            await conn.execute(update(Job).where(_holds(lease)).values(
                lease_owner=None, lease_expires_at=None))

    # ---- job state ---------------------------------------------------------------------

    async def advance(self, lease: Lease, expected: JobState, new: JobState, *,
                      message: str = "", **fields: Any) -> None:
        """Move the job from `expected` to `new` (a legal transition), setting `fields` too."""
        check_transition(expected, new)
        values: dict[str, Any] = {"state": new.value, "updated_at": utcnow(), **fields}
        if new in TERMINAL_STATES:
            values["finished_at"] = values["updated_at"]
        if new is JobState.FAILED:
            values.setdefault("state_before_failure", expected.value)
        async with self.engine.begin() as conn:
            result = await conn.execute(update(Job).where(
                _holds(lease), Job.state == expected.value).values(**values))
            if result.rowcount != 1:
                await _explain_refusal(conn, lease, expected)
            await _event(conn, lease.job_id, "transition", message or new.value,
                         from_state=expected.value, to_state=new.value)

    async def update_job(self, lease: Lease, expected: JobState, **fields: Any) -> None:
        """Set fields of the job without changing its state (guarded like a transition)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(update(Job).where(
                _holds(lease), Job.state == expected.value).values(updated_at=utcnow(),
                                                                   **fields))
            if result.rowcount != 1:
                await _explain_refusal(conn, lease, expected)

    async def request_cancel(self, job_id: str) -> Job:
        """Stop a job for good: at once if nobody drives it, else at its driver's next step."""
        now = utcnow()
        owner = (await self.get_job(job_id)).lease_owner
        free = or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)
        if owner and _owner_is_dead_local_process(owner):
            # A run killed mid-job leaves its lease behind; nobody will ever act on a request.
            free = or_(free, Job.lease_owner == owner)
        async with self.engine.begin() as conn:
            live = [s.value for s in JobState if s not in TERMINAL_STATES] + \
                [JobState.FAILED.value]
            cancelled = await conn.execute(update(Job).where(
                Job.id == job_id, Job.state.in_(live), free).values(
                    state=JobState.CANCELLED.value, updated_at=now, finished_at=now,
                    lease_owner=None, lease_expires_at=None, wake_at=None))
            if cancelled.rowcount == 1:
                await _event(conn, job_id, "transition", "cancelled by the user",
                             to_state=JobState.CANCELLED.value)
            else:
                await conn.execute(update(Job).where(Job.id == job_id, Job.state.in_(live))
                                   .values(cancel_requested=True, updated_at=now))
                await _event(conn, job_id, "cancel", "cancel requested; the driver will stop")
        return await self.get_job(job_id)

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job (a one-column read, cheap to poll)."""
        async with self.engine.connect() as conn:
            return bool((await conn.execute(
                select(Job.cancel_requested).where(Job.id == job_id))).scalar_one())

    async def retry_failed(self, job_id: str) -> Job:
        """Bring a failed job back to where it stopped, with its failed photos cleared."""
        job = await self.get_job(job_id)
        if job.state != JobState.FAILED.value:
            raise StateConflict(f"job {job_id[:8]} is {job.state}, not failed: nothing to retry")
        back_to = job.state_before_failure or JobState.QUEUED.value
        async with self.engine.begin() as conn:
            result = await conn.execute(update(Job).where(
                Job.id == job_id, Job.state == JobState.FAILED.value).values(
                    state=back_to, last_error=None, finished_at=None, updated_at=utcnow(),
                    attempt_count=Job.attempt_count + 1, wake_at=None))
            if result.rowcount != 1:
                raise StateConflict(f"job {job_id[:8]} changed while retrying; try again")
            await conn.execute(update(Photo).where(Photo.job_id == job_id).values(
                failed_phase=None, failed_reason=None))
            await _event(conn, job_id, "retry", f"retry requested; back to {back_to}",
                         from_state=JobState.FAILED.value, to_state=back_to)
        return await self.get_job(job_id)

    # ---- photos ------------------------------------------------------------------------

    async def set_photo_source(self, lease: Lease, photo_id: int, *, md5: str, size: int,
                               mtime_ns: int) -> None:
        """Record the hash of a photo (with the size and mtime it was computed at)."""
        await self._photo_write(lease, photo_id, **source_checkpoint(md5=md5, size=size,
                                                                     mtime_ns=mtime_ns))

    async def mark_uploaded(self, lease: Lease, photo_id: int) -> None:
        """Checkpoint one finished, verified upload."""
        await self._photo_write(lease, photo_id, **upload_checkpoint())

    async def forget_upload(self, lease: Lease, photo_id: int) -> None:
        """Undo an upload checkpoint (the photo changed and must be sent again)."""
        await self._photo_write(lease, photo_id, uploaded_at=None)

    async def mark_output(self, lease: Lease, photo_id: int, phase: str, *, name: str,
                          size: int, md5: str) -> None:
        """Checkpoint one finished, verified download of an edit or export output."""
        await self._photo_write(lease, photo_id, **output_checkpoint(phase, name=name, size=size,
                                                                     md5=md5))

    async def mark_photo_failed(self, lease: Lease, photo_id: int, phase: str,
                                reason: str) -> None:
        """Record why a photo's phase keeps failing; the rest of the job goes on."""
        await self._photo_write(lease, photo_id, **failure_checkpoint(phase, reason))

    @asynccontextmanager
    async def photo_writer(self, lease: Lease) -> AsyncIterator[PhotoWriter]:
        """A writer of batched photo checkpoints for one job, open while the block runs."""
        if self.engine.dialect.name != "sqlite":
            # Pooled connections are cheap to take per batch, and a busy daemon must not pin
            # one per job for a whole stage.
            yield PhotoWriter(lease, self.engine.begin)
            return
        # SQLite connections are not pooled, and opening one costs more than writing a whole
        # batch: the writer keeps one for its life (it holds no lock between batches).
        async with self.engine.connect() as conn:
            @asynccontextmanager
            async def begin() -> AsyncIterator[AsyncConnection]:
                async with conn.begin():
                    yield conn

            yield PhotoWriter(lease, begin)

    async def _photo_write(self, lease: Lease, photo_id: int, **values: Any) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(update(Photo).where(
                Photo.id == photo_id, Photo.job_id == lease.job_id,
                exists().where(_holds(lease))).values(**values))
            if result.rowcount != 1:
                await _require_lease(conn, lease)
                raise LookupError(f"photo {photo_id} is not part of job {lease.job_id}")

    # ---- history -----------------------------------------------------------------------

    async def add_event(self, job_id: str, kind: str, message: str, *,
                        data: dict[str, Any] | None = None) -> None:
        """Append one entry to the job's history."""
        async with self.engine.begin() as conn:
            await _event(conn, job_id, kind, message, data=data)


PhotoValues = dict[str, Any]
"""Columns of one photo row to set in a checkpoint."""


def source_checkpoint(*, md5: str, size: int, mtime_ns: int) -> PhotoValues:
    """A photo's hash, with the size and mtime it was computed at ("" md5: hash it again)."""
    return {"md5": md5, "size": size, "mtime_ns": mtime_ns}


def upload_checkpoint() -> PhotoValues:
    """A finished, verified upload."""
    return {"uploaded_at": utcnow(), "failed_phase": None, "failed_reason": None}


def output_checkpoint(phase: str, *, name: str, size: int, md5: str) -> PhotoValues:
    """A finished, verified download of an edit or export output."""
    if phase not in ("edit", "export"):
        raise ValueError(f"unknown output phase {phase!r}")
    return {f"{phase}_output": name, f"{phase}_size": size, f"{phase}_md5": md5,
            f"{phase}_done_at": utcnow(), "failed_phase": None, "failed_reason": None}


def failure_checkpoint(phase: str, reason: str) -> PhotoValues:
    """Why a photo's phase keeps failing."""
    return {"failed_phase": phase, "failed_reason": reason}


class PhotoWriter:
    """Writes per-photo checkpoints of one job in batches, each batch one guarded transaction.

    Made by `Store.photo_writer`. Group commit is what makes a 10,000-photo job cheap to
    checkpoint: photos finishing together share one commit instead of paying one each.
    """

    def __init__(self, lease: Lease,
                 begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]]) -> None:
        self._lease = lease
        self._begin = begin
        self._statements: dict[tuple[str, ...], Update] = {}

    async def write(self, updates: Sequence[tuple[int, PhotoValues]]) -> None:
        """Apply `(photo id, values)` in order, all or none; StaleLease if the lease is gone.

        LookupError (and nothing written) if a photo is not part of the job.
        """
        if not updates:
            return
        lease = self._lease
        async with self._begin() as conn:
            counted = conn.dialect.supports_sane_multi_rowcount
            if not counted:
                # Postgres cannot say how many rows an executemany touched, so the lease is
                # checked up front, and the job row locked until commit so that nobody can
                # take the lease over in between; and the photos are counted.
                await _require_lease(conn, lease, lock=True)
                ids = {photo_id for photo_id, _ in updates}
                found = (await conn.execute(select(func.count()).select_from(Photo).where(
                    Photo.job_id == lease.job_id, Photo.id.in_(ids)))).scalar_one()
                if found != len(ids):
                    raise LookupError(f"a photo of this batch is not part of job "
                                      f"{lease.job_id}")
            for columns, rows in _runs_of_same_columns(updates):
                result = await conn.execute(self._statement(columns, guarded=counted), rows)
                if counted and result.rowcount != len(rows):
                    # SQLite: the lease rides in every UPDATE, the count tells if it held.
                    await _require_lease(conn, lease)
                    raise LookupError(f"a photo of this batch is not part of job "
                                      f"{lease.job_id}")

    def _statement(self, columns: tuple[str, ...], *, guarded: bool) -> Update:
        # Built once per column set: rebuilding it for every batch costs more than the write.
        statement = self._statements.get(columns)
        if statement is None:
            where = [Photo.id == bindparam("p_id"), Photo.job_id == self._lease.job_id]
            if guarded:
                where.append(exists().where(_holds(self._lease)))
            statement = update(Photo).where(*where).values(
                {column: bindparam(f"p_{column}") for column in columns})
            self._statements[columns] = statement
        return statement


def _runs_of_same_columns(updates: Sequence[tuple[int, PhotoValues]]
                          ) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """Consecutive updates grouped by the columns they set, order kept, for executemany."""
    runs: list[tuple[tuple[str, ...], list[dict[str, Any]]]] = []
    for photo_id, values in updates:
        columns = tuple(sorted(values))
        row = {"p_id": photo_id, **{f"p_{column}": values[column] for column in columns}}
        if runs and runs[-1][0] == columns:
            runs[-1][1].append(row)
        else:
            runs.append((columns, [row]))
    return runs


async def _event(conn: AsyncConnection, job_id: str, kind: str, message: str, *,
                 from_state: str | None = None, to_state: str | None = None,
                 data: dict[str, Any] | None = None) -> None:
    await conn.execute(insert(Event).values(
        job_id=job_id, at=utcnow(), kind=kind, message=message, from_state=from_state,
        to_state=to_state, data=data))


async def _require_lease(conn: AsyncConnection, lease: Lease, *, lock: bool = False) -> None:
    query = select(Job.id).where(_holds(lease))
    held = (await conn.execute(query.with_for_update() if lock else query)).first()
    if held is None:
        raise StaleLease(f"lost the lease of job {lease.job_id[:8]} (epoch {lease.epoch})")


async def _explain_refusal(conn: AsyncConnection, lease: Lease, expected: JobState) -> None:
    await _require_lease(conn, lease)
    state = (await conn.execute(select(Job.state).where(Job.id == lease.job_id))).scalar_one()
    raise StateConflict(f"job {lease.job_id[:8]} is {state}, expected {expected.value}")


def _fmt(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment else "unknown"
