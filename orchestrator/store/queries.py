"""Every read and write of job state, each write one named statement guarded by what it expects.

State writes check the expected state and the lease (owner and epoch) in their WHERE clause and
fail loudly when no row matched: a worker that lost its lease cannot overwrite newer state.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeAlias

from sqlalchemy import (
    ColumnElement,
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
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, async_sessionmaker

from orchestrator.errors import OperatorRefusal
from orchestrator.states import TERMINAL_STATES, JobState, Move
from orchestrator.store.clock import database_now
from orchestrator.store.db import SqliteThread, create_engine, sqlite_path, upsert_into
from orchestrator.store.models import (
    FAILED_PHASE,
    LIVE_JOB,
    Event,
    Job,
    Photo,
    PhotoPhase,
    Refusal,
    Shoot,
    utcnow,
)
from orchestrator.words import plural


class JobNotFound(OperatorRefusal, LookupError):
    """No job matches the id (or id prefix) given."""

    http_status = 404


class LeaseHeld(OperatorRefusal, RuntimeError):
    """Another live process drives this job right now: try again once it lets go."""

    exit_code = 1


class StaleLease(RuntimeError):
    """A write was refused because this worker no longer holds the job's lease (fencing)."""


class StateConflict(OperatorRefusal, RuntimeError):
    """The job is not in the state the write expected."""


@dataclass(frozen=True)
class NewPhoto:
    """A photo found in the shoot folder, as it is first recorded."""

    rel_path: str
    file_name: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class JobCursor:
    """Where a page of jobs (newest first) ended: the last job's creation time and id."""

    created_at: datetime
    job_id: str


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
    profile_name: str
    spec: dict[str, Any]
    """The job's spec as stored (`JobSpec.to_stored()`)."""
    project_name: str
    shoot_id: str | None = None
    """The shoot the job belongs to; None: a shoot of its own, named as the job, is made."""


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


def live_lease_owner(job: Job) -> str | None:
    """Who drives the job now: its lease owner, unless the lease expired or its process exited."""
    owner, expires = job.lease_owner, job.lease_expires_at
    if owner is None or expires is None or expires < utcnow():
        return None
    return None if _owner_is_dead_local_process(owner) else owner


MIN_ID_PREFIX = 4
"""Fewest characters of a job id that name a job."""
SHOWN_CANDIDATES = 5
"""Jobs listed when a name or folder fits several."""
_HEX = frozenset("0123456789abcdef")


def looks_like_id(text: str) -> bool:
    """Whether `text` could be (the start of) a job or shoot id: hex digits only."""
    return set(text.lower()) <= _HEX


def looks_like_path(text: str) -> bool:
    """Whether `text` is written as a path (`./smith`, `~/shoots/smith`, `/srv/smith`)."""
    return os.sep in text or text in (".", "..") or text.startswith("~")


def resolved_folder(text: str) -> str:
    """The absolute folder a path argument names, as `jobs.source` records folders."""
    return str(Path(text).expanduser().resolve())


def _several(ref: str, jobs: Sequence[Job], hint: str) -> str:
    listed = "; ".join(
        f"{job.id[:8]} {job.name} ({job.state}, {job.source})" for job in jobs[:SHOWN_CANDIDATES]
    )
    more = " …" if len(jobs) > SHOWN_CANDIDATES else ""
    return f"{ref!r} fits several jobs: {listed}{more}; {hint}"


def _new_shoot(shoot_id: str, name: str, source: str, keywords: Sequence[str]) -> Any:
    return insert(Shoot).values(
        id=shoot_id, name=name, source=source, keywords=list(keywords), created_at=utcnow()
    )


def _holds(lease: Lease) -> ColumnElement[bool]:
    return and_(
        Job.id == lease.job_id, Job.lease_owner == lease.owner, Job.lease_epoch == lease.epoch
    )


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
        """The job `ref` names: its id or the id's first characters (at least 4), its name, or
        the folder it was made from (a path: `./smith-wedding`, or the folder's name).

        An id wins over a name; a name or folder that fits several jobs is refused with every
        candidate listed by id, so the user can pick one.
        """
        text = ref.strip()
        if not text:
            raise JobNotFound("give a job's id, name or folder; `orchestrator status` lists them")
        if looks_like_id(text) and len(text) >= MIN_ID_PREFIX:
            by_id = await self._jobs_where(Job.id.startswith(text.lower(), autoescape=True))
            if len(by_id) == 1:
                return by_id[0]
            if len(by_id) > 1:
                raise JobNotFound(_several(text, by_id, "give more of the id"))
        if looks_like_path(text):
            found = await self._jobs_where(Job.source == resolved_folder(text))
        else:
            found = await self._jobs_where(
                or_(
                    Job.name == text,
                    Job.source.endswith(f"{os.sep}{text}", autoescape=True),
                )
            )
        if len(found) == 1:
            return found[0]
        if found:
            raise JobNotFound(_several(text, found, "give the id of one"))
        if looks_like_id(text) and len(text) < MIN_ID_PREFIX:
            raise JobNotFound(
                f"job id {text!r} is too short: give at least {MIN_ID_PREFIX} characters"
            )
        raise JobNotFound(
            f"no job has the id, name or folder {text!r}; `orchestrator status` lists them"
        )

    async def _jobs_where(self, condition: ColumnElement[bool]) -> list[Job]:
        """Up to `SHOWN_CANDIDATES` + 1 jobs that fit, newest first."""
        async with self._sessions() as session:
            query = (
                select(Job)
                .where(condition)
                .order_by(Job.created_at.desc(), Job.id.desc())
                .limit(SHOWN_CANDIDATES + 1)
            )
            return list((await session.scalars(query)).all())

    async def jobs_for_source(self, source: str) -> list[Job]:
        """Every job ever made from this source folder, newest first."""
        async with self._sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Job).where(Job.source == source).order_by(Job.created_at.desc())
                    )
                ).all()
            )

    async def list_jobs(
        self,
        *,
        state: str | None = None,
        limit: int | None = None,
        job_id: str | None = None,
        live: bool | None = None,
        before: JobCursor | None = None,
    ) -> list[tuple[Job, int]]:
        """Jobs with their photo counts, newest first: every one, or those in `state`, the
        live (`live=True`) or finished (`live=False`) ones, or the one `job_id`; only those
        older than `before` (the last of a previous page); at most `limit` of them.

        Photos are counted for the jobs listed only, whatever the table holds.
        """
        query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
        if state is not None:
            query = query.where(Job.state == state)
        if job_id is not None:
            query = query.where(Job.id == job_id)
        if live is not None:
            query = query.where(LIVE_JOB if live else ~LIVE_JOB)
        if before is not None:
            query = query.where(
                or_(
                    Job.created_at < before.created_at,
                    and_(Job.created_at == before.created_at, Job.id < before.job_id),
                )
            )
        async with self._sessions() as session:
            jobs = list((await session.scalars(query)).all())
            ids = [job.id for job in jobs]
            counted = await session.execute(
                select(Photo.job_id, func.count())
                .where(Photo.job_id.in_(ids))
                .group_by(Photo.job_id)
            )
            counts = {job_id: int(n) for job_id, n in counted.all()}
        return [(job, counts.get(job.id, 0)) for job in jobs]

    async def count_jobs(self, *, live: bool) -> int:
        """How many jobs are live (or finished)."""
        async with self.engine.connect() as conn:
            found = await conn.scalar(
                select(func.count()).select_from(Job).where(LIVE_JOB if live else ~LIVE_JOB)
            )
        return int(found or 0)

    async def phases_done(self, job_ids: Sequence[str]) -> dict[str, dict[str, int]]:
        """How many photos of each job finished each phase (one grouped count, no rows)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(PhotoPhase.job_id, PhotoPhase.phase, func.count())
                    .where(PhotoPhase.job_id.in_(job_ids), PhotoPhase.done_at.is_not(None))
                    .group_by(PhotoPhase.job_id, PhotoPhase.phase)
                )
            ).all()
        done: dict[str, dict[str, int]] = {job_id: {} for job_id in job_ids}
        for job_id, phase, count in rows:
            done[job_id][phase] = int(count)
        return done

    async def photos(self, job_id: str) -> list[PhotoRecord]:
        """The job's photos in a stable order, each with what every phase did with it."""
        async with self.engine.connect() as conn:
            return await _photo_records(conn, Photo.job_id == job_id, PhotoPhase.job_id == job_id)

    async def photo(self, job_id: str, photo_id: int) -> PhotoRecord | None:
        """One photo of the job with its phases (None if the job has no such photo)."""
        async with self.engine.connect() as conn:
            found = await _photo_records(
                conn,
                and_(Photo.job_id == job_id, Photo.id == photo_id),
                PhotoPhase.photo_id == photo_id,
            )
        return found[0] if found else None

    async def photo_page(
        self, job_id: str, *, after: int | None, limit: int, failed: bool = False
    ) -> list[PhotoRecord]:
        """A page of the job's photos in id order: at most `limit`, those after the photo id
        `after`; only those with a phase that failed for good (`failed`). Reads the page's
        rows only, whatever the job's size."""
        after_id = after if after is not None else -1
        if failed:
            ids = (
                select(PhotoPhase.photo_id)
                .where(PhotoPhase.job_id == job_id, FAILED_PHASE, PhotoPhase.photo_id > after_id)
                .group_by(PhotoPhase.photo_id)
                .order_by(PhotoPhase.photo_id)
                .limit(limit)
            )
        else:
            ids = (
                select(Photo.id)
                .where(Photo.job_id == job_id, Photo.id > after_id)
                .order_by(Photo.id)
                .limit(limit)
            )
        async with self.engine.connect() as conn:
            wanted = list((await conn.scalars(ids)).all())
            if not wanted:
                return []
            return await _photo_records(
                conn,
                and_(Photo.job_id == job_id, Photo.id.in_(wanted)),
                and_(PhotoPhase.job_id == job_id, PhotoPhase.photo_id.in_(wanted)),
            )

    async def recorded_photos(self, job_id: str) -> list[RecordedPhoto]:
        """The job's photos as files, without loading whole rows (a fraction of `photos`)."""
        async with self.engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(Photo.rel_path, Photo.file_name, Photo.size, Photo.mtime_ns, Photo.md5)
                    .where(Photo.job_id == job_id)
                    .order_by(Photo.id)
                )
            ).all()
        return [RecordedPhoto(*row) for row in rows]

    async def events(self, job_id: str) -> list[Event]:
        """The job's history, oldest first."""
        async with self._sessions() as session:
            return list(
                (
                    await session.scalars(
                        select(Event).where(Event.job_id == job_id).order_by(Event.id)
                    )
                ).all()
            )

    async def events_of_kinds(
        self, job_ids: Sequence[str], kinds: Sequence[str]
    ) -> dict[str, list[Event]]:
        """The jobs' history entries of these kinds, oldest first, by job."""
        found: dict[str, list[Event]] = {job_id: [] for job_id in job_ids}
        if not job_ids:
            return found
        async with self._sessions() as session:
            events = await session.scalars(
                select(Event)
                .where(Event.job_id.in_(job_ids), Event.kind.in_(kinds))
                .order_by(Event.id)
            )
            for event in events:
                found[event.job_id].append(event)
        return found

    async def recorded_paths(
        self, job_ids: Sequence[str], paths: Sequence[str]
    ) -> set[tuple[str, str]]:
        """Which of `paths` are photos of each job's shoot now (of the job itself, or of
        another job of its shoot: a follow-up), as (job id, rel_path)."""
        if not job_ids or not paths:
            return set()
        asked, holder = Job.__table__.alias("asked"), Job.__table__.alias("holder")
        async with self.engine.connect() as conn:
            rows = await conn.execute(
                select(asked.c.id, Photo.rel_path)
                .select_from(Photo)
                .join(holder, holder.c.id == Photo.job_id)
                .join(asked, asked.c.shoot_id == holder.c.shoot_id)
                .where(asked.c.id.in_(job_ids), Photo.rel_path.in_(sorted(set(paths))))
            )
            return {(job_id, rel_path) for job_id, rel_path in rows.all()}

    async def entered_state_at(self, job_id: str, state: str) -> datetime | None:
        """When the job last moved into `state` (a transition or a retry), if it ever did."""
        async with self.engine.connect() as conn:
            return (
                await conn.execute(
                    select(func.max(Event.at)).where(
                        Event.job_id == job_id, Event.to_state == state
                    )
                )
            ).scalar_one()

    # ---- creation ----------------------------------------------------------------------

    async def create_shoot(self, *, name: str, source: str, keywords: Sequence[str] = ()) -> str:
        """Record a new shoot of the folder `source`; its id."""
        shoot_id = uuid.uuid4().hex
        async with self.engine.begin() as conn:
            await conn.execute(_new_shoot(shoot_id, name, source, keywords))
        return shoot_id

    async def create_job(self, job: NewJob, photos: Sequence[NewPhoto]) -> None:
        """Record a new queued job and its photos in one transaction (and its shoot, when the
        job names none)."""
        now = utcnow()
        async with self.engine.begin() as conn:
            shoot_id = job.shoot_id
            if shoot_id is None:
                shoot_id = uuid.uuid4().hex
                await conn.execute(_new_shoot(shoot_id, job.name, job.source, ()))
            await conn.execute(
                insert(Job).values(
                    id=job.id,
                    shoot_id=shoot_id,
                    name=job.name,
                    source=job.source,
                    edited_dir=job.edited_dir,
                    exported_dir=job.exported_dir,
                    image_type=job.image_type,
                    profile_key=job.profile_key,
                    profile_name=job.profile_name,
                    options=job.spec,
                    state=JobState.QUEUED.value,
                    project_name=job.project_name,
                    attempt_count=0,
                    lease_epoch=0,
                    cancel_requested=False,
                    created_at=now,
                    updated_at=now,
                )
            )
            if photos:
                await conn.execute(
                    insert(Photo),
                    [
                        {
                            "job_id": job.id,
                            "rel_path": p.rel_path,
                            "file_name": p.file_name,
                            "size": p.size,
                            "mtime_ns": p.mtime_ns,
                        }
                        for p in photos
                    ],
                )
            await _event(
                conn,
                job.id,
                "created",
                f"job created with {plural(len(photos), 'photo')}",
                to_state=JobState.QUEUED.value,
            )

    async def add_photos(self, lease: Lease, photos: Sequence[NewPhoto]) -> None:
        """Add photos to a job that has not uploaded yet (new files found on resume)."""
        async with self.engine.begin() as conn:
            await _require_lease(conn, lease)
            await conn.execute(
                insert(Photo),
                [
                    {
                        "job_id": lease.job_id,
                        "rel_path": p.rel_path,
                        "file_name": p.file_name,
                        "size": p.size,
                        "mtime_ns": p.mtime_ns,
                    }
                    for p in photos
                ],
            )

    async def remove_photos(self, lease: Lease, photo_ids: Sequence[int]) -> None:
        """Forget photos that vanished from the folder before any phase was done with them."""
        async with self.engine.begin() as conn:
            await _require_lease(conn, lease)
            await conn.execute(
                delete(Photo).where(
                    Photo.job_id == lease.job_id,
                    Photo.id.in_(photo_ids),
                    ~exists().where(
                        PhotoPhase.photo_id == Photo.id, PhotoPhase.done_at.is_not(None)
                    ),
                )
            )

    async def rename_photo(
        self, lease: Lease, photo_id: int, rel_path: str, file_name: str
    ) -> None:
        """Follow a photo renamed in the folder before its upload: the same photo, a new name."""
        async with self.engine.begin() as conn:
            await _require_lease(conn, lease)
            await conn.execute(
                update(Photo)
                .where(Photo.job_id == lease.job_id, Photo.id == photo_id)
                .values(rel_path=rel_path, file_name=file_name)
            )

    # ---- leases ------------------------------------------------------------------------

    async def claim(self, job_id: str, owner: str, ttl: float) -> Lease:
        """Take the job's lease: free, expired, or left by a dead process of this host."""
        job = await self.get_job(job_id)
        async with self.engine.begin() as conn:
            now = await database_now(conn)
            claimable = or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)
            if (
                job.lease_owner
                and job.lease_owner != owner
                and _owner_is_dead_local_process(job.lease_owner)
            ):
                claimable = or_(claimable, Job.lease_owner == job.lease_owner)
            epoch = (
                await conn.execute(
                    update(Job)
                    .where(Job.id == job_id, claimable)
                    .values(
                        lease_owner=owner,
                        lease_expires_at=now + timedelta(seconds=ttl),
                        lease_epoch=Job.lease_epoch + 1,
                    )
                    .returning(Job.lease_epoch)
                )
            ).scalar_one_or_none()
            if epoch is None:
                raise LeaseHeld(
                    f"job {job_id[:8]} is being driven by {job.lease_owner} (lease until "
                    f"{_fmt(job.lease_expires_at)}); wait for it or stop that process"
                )
            if job.lease_owner and job.lease_owner != owner:
                await _event(
                    conn,
                    job_id,
                    "lease",
                    "lease taken over from a stopped process",
                    data={"previous_owner": job.lease_owner, "epoch": epoch},
                )
        return Lease(job_id, owner, int(epoch))

    async def renew(self, lease: Lease, ttl: float) -> bool:
        """Extend the lease; False if it was lost (taken over)."""
        async with self.engine.begin() as conn:
            now = await database_now(conn)
            result = await conn.execute(
                update(Job)
                .where(_holds(lease))
                .values(lease_expires_at=now + timedelta(seconds=ttl))
            )
        return result.rowcount == 1

    async def release(self, lease: Lease) -> None:
        """Give the lease back (no-op if it was already lost)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                update(Job).where(_holds(lease)).values(lease_owner=None, lease_expires_at=None)
            )

    # ---- job state ---------------------------------------------------------------------

    async def advance(self, lease: Lease, move: Move, *, message: str = "") -> None:
        """Make the move (checked by the transition table), guarded by its starting state."""
        await self._move(lease, move, message, {})

    async def record_project(
        self, lease: Lease, move: Move, *, project_uuid: str, message: str
    ) -> None:
        """Make the move that records the job's Imagen project."""
        await self._move(lease, move, message, {"project_uuid": project_uuid})

    async def fail(self, lease: Lease, move: Move, *, reason: str, back_to: str) -> None:
        """Move the job to failed with the reason the user must act on; `retry` goes `back_to`."""
        if move.to_state != JobState.FAILED:
            raise ValueError(f"fail() needs a move to failed, not to {move.to_state}")
        await self._move(
            lease, move, reason, {"last_error": reason, "state_before_failure": back_to}
        )

    async def _move(self, lease: Lease, move: Move, message: str, fields: dict[str, str]) -> None:
        now = utcnow()
        finished = {"finished_at": now} if move.to_state in TERMINAL_STATES else {}
        # A job that moves on got past what stopped it: the error stays in its history only.
        cleared: dict[str, None] = {} if "last_error" in fields else {"last_error": None}
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(_holds(lease), Job.state == move.from_state)
                .values(state=move.to_state, updated_at=now, **finished, **cleared, **fields)
            )
            if result.rowcount != 1:
                await _explain_refusal(conn, lease, move.from_state)
            await _event(
                conn,
                lease.job_id,
                "transition",
                message or move.to_state,
                from_state=move.from_state,
                to_state=move.to_state,
            )

    async def set_callback_secret(self, lease: Lease, state: str, secret_hash: str) -> None:
        """Store the hash of the secret in the callback URL about to be sent to Imagen."""
        await self._set(lease, state, callback_secret_hash=secret_hash)

    async def sleep_until(
        self, lease: Lease, state: str, wake_at: datetime, *, poll_at: datetime | None = None
    ) -> None:
        """Let a waiting job sleep in the database until `wake_at` (daemon mode); with
        `poll_at`, the daemons' poller asks Imagen for it then, and `wake_at` is its deadline."""
        if poll_at is None:
            await self._set(lease, state, wake_at=wake_at)
        else:
            await self._set(lease, state, wake_at=wake_at, poll_at=poll_at)

    async def pause(self, lease: Lease, reason: str, *, wake_at: datetime | None) -> None:
        """Record why the job stopped for now, in whatever state it is; the daemon tries it
        again at `wake_at`."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(_holds(lease))
                .values(last_error=reason, wake_at=wake_at, updated_at=utcnow())
            )
            if result.rowcount != 1:
                await _require_lease(conn, lease)
            await _event(conn, lease.job_id, "paused", reason)

    async def _set(self, lease: Lease, state: str, **values: str | datetime) -> None:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(_holds(lease), Job.state == state)
                .values(updated_at=utcnow(), **values)
            )
            if result.rowcount != 1:
                await _explain_refusal(conn, lease, state)

    async def request_cancel(self, job_id: str, move: Move) -> Job:
        """Stop a job for good: at once if nobody drives it, else at its driver's next step.

        `move` is the job's current state to cancelled, as the transition table allows it.
        """
        owner = (await self.get_job(job_id)).lease_owner
        async with self.engine.begin() as conn:
            now = await database_now(conn)
            free = or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)
            if owner and _owner_is_dead_local_process(owner):
                # A run killed mid-job leaves its lease behind; nobody will ever act on a request.
                free = or_(free, Job.lease_owner == owner)
            cancelled = await conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == move.from_state, free)
                .values(
                    state=move.to_state,
                    updated_at=now,
                    finished_at=now,
                    lease_owner=None,
                    lease_expires_at=None,
                    wake_at=None,
                )
            )
            if cancelled.rowcount == 1:
                await _event(
                    conn,
                    job_id,
                    "transition",
                    "cancelled by the user",
                    from_state=move.from_state,
                    to_state=move.to_state,
                )
            else:
                flagged = await conn.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state.not_in(TERMINAL_STATES), ~free)
                    .values(cancel_requested=True, updated_at=now)
                )
                if flagged.rowcount != 1:
                    raise StateConflict(f"job {job_id[:8]} changed while cancelling; try again")
                await _event(conn, job_id, "cancel", "cancel requested; the driver will stop")
        return await self.get_job(job_id)

    async def cancel_requested(self, job_id: str) -> bool:
        """Whether someone asked to cancel the job (a one-column read, cheap to poll)."""
        async with self.engine.connect() as conn:
            return bool(
                (
                    await conn.execute(select(Job.cancel_requested).where(Job.id == job_id))
                ).scalar_one()
            )

    async def retry_failed(self, job_id: str, move: Move) -> Job:
        """Bring a failed job back (`move`: failed to where it stopped), failures cleared."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                update(Job)
                .where(Job.id == job_id, Job.state == move.from_state)
                .values(
                    state=move.to_state,
                    last_error=None,
                    finished_at=None,
                    updated_at=utcnow(),
                    attempt_count=Job.attempt_count + 1,
                    wake_at=None,
                )
            )
            if result.rowcount != 1:
                raise StateConflict(f"job {job_id[:8]} changed while retrying; try again")
            await conn.execute(
                delete(PhotoPhase).where(PhotoPhase.job_id == job_id, PhotoPhase.done_at.is_(None))
            )
            await conn.execute(
                update(PhotoPhase).where(PhotoPhase.job_id == job_id).values(failed_reason=None)
            )
            await _event(
                conn,
                job_id,
                "retry",
                f"retry requested; back to {move.to_state}",
                from_state=move.from_state,
                to_state=move.to_state,
            )
        return await self.get_job(job_id)

    # ---- photos ------------------------------------------------------------------------

    async def set_photo_source(
        self, lease: Lease, photo_id: int, *, md5: str, size: int, mtime_ns: int
    ) -> None:
        """Record the hash of a photo (with the size and mtime it was computed at)."""
        await self.checkpoint(
            lease, photo_id, SourceCheckpoint(md5=md5, size=size, mtime_ns=mtime_ns)
        )

    async def forget_phase(self, lease: Lease, photo_id: int, phase: str) -> None:
        """Undo a phase of a photo (it changed and must go through that phase again)."""
        async with self.engine.begin() as conn:
            await conn.execute(
                delete(PhotoPhase).where(
                    PhotoPhase.photo_id == photo_id,
                    PhotoPhase.job_id == lease.job_id,
                    PhotoPhase.phase == phase,
                )
            )
            await _require_lease(conn, lease, lock=True)

    async def checkpoint(self, lease: Lease, photo_id: int, checkpoint: Checkpoint) -> None:
        """Write one photo checkpoint on its own (stages batch theirs with `photo_writer`)."""
        async with self.photo_writer(lease) as writer:
            await writer.write([(photo_id, checkpoint)])

    @asynccontextmanager
    async def photo_writer(self, lease: Lease) -> AsyncIterator[PhotoWriter]:
        """A writer of batched photo checkpoints for one job, open while the block runs."""
        dialect = self.engine.dialect.name
        if dialect != "sqlite":
            # Pooled connections are cheap to take per batch, and a busy daemon must not pin
            # one per job for a whole stage.
            yield PhotoWriter(lease, dialect, begin=self.engine.begin)
            return
        path = sqlite_path(self.engine.url.render_as_string(hide_password=False))
        if path is None:
            # An in-memory database is private to its connection: write through the engine's.
            async with self.engine.connect() as conn:

                @asynccontextmanager
                async def begin() -> AsyncIterator[AsyncConnection]:
                    async with conn.begin():
                        yield conn

                yield PhotoWriter(lease, dialect, begin=begin)
            return
        # A batch through aiosqlite is a trip to its thread and back per statement (five), each
        # waiting for a turn of a busy event loop; a connection on a thread of its own takes
        # the whole batch in one trip. It holds no lock between batches.
        async with SqliteThread(path) as thread:
            yield PhotoWriter(lease, dialect, thread=thread)

    # ---- refused drops -----------------------------------------------------------------

    async def record_refusal(self, source: str, reason: str) -> None:
        """Remember why a drop could not become a job (the latest reason replaces any older)."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(Refusal).where(Refusal.source == source))
            await conn.execute(
                insert(Refusal).values(source=source, reason=reason, refused_at=utcnow())
            )

    async def clear_refusal(self, source: str) -> None:
        """Forget a drop's refusal: it became a job, or went away."""
        async with self.engine.begin() as conn:
            await conn.execute(delete(Refusal).where(Refusal.source == source))

    async def refusals(self) -> list[Refusal]:
        """Every drop refused now, newest first."""
        async with self._sessions() as session:
            return list(
                (await session.scalars(select(Refusal).order_by(Refusal.refused_at.desc()))).all()
            )

    # ---- history -----------------------------------------------------------------------

    async def add_event(
        self, job_id: str, kind: str, message: str, *, data: dict[str, Any] | None = None
    ) -> None:
        """Append one entry to the job's history."""
        async with self.engine.begin() as conn:
            await _event(conn, job_id, kind, message, data=data)


@dataclass
class PhaseRecord:
    """What one phase did with one photo."""

    output: str | None
    size: int | None
    md5: str | None
    details: dict[str, Any] | None
    done_at: datetime | None
    failed_reason: str | None


@dataclass
class PhotoRecord:
    """A photo of a job as the stages see it: its source file and its phases."""

    id: int
    rel_path: str
    file_name: str
    size: int
    mtime_ns: int
    md5: str | None
    phases: dict[str, PhaseRecord] = field(default_factory=dict)

    def done(self, phase: str) -> bool:
        """Whether `phase` finished for this photo."""
        record = self.phases.get(phase)
        return record is not None and record.done_at is not None

    def phase(self, phase: str) -> PhaseRecord | None:
        """What `phase` recorded for this photo, if anything."""
        return self.phases.get(phase)

    @property
    def failures(self) -> list[tuple[str, str]]:
        """Every (phase, reason) that keeps failing for this photo."""
        return [
            (name, record.failed_reason)
            for name, record in self.phases.items()
            if record.failed_reason
        ]


@dataclass(frozen=True)
class SourceCheckpoint:
    """A photo's hash, with the size and mtime it was computed at ("" md5: hash it again)."""

    md5: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class PhaseDone:
    """A phase finished for a photo, with what is needed to verify or skip it later."""

    phase: str
    output: str | None = None
    size: int | None = None
    md5: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True)
class PhaseFailed:
    """Why a phase keeps failing for a photo."""

    phase: str
    reason: str


Checkpoint: TypeAlias = SourceCheckpoint | PhaseDone | PhaseFailed
"""One per-photo write."""


class PhotoWriter:
    """Writes per-photo checkpoints of one job in batches, each batch one guarded transaction.

    Made by `Store.photo_writer`. Group commit is what makes a 10,000-photo job cheap to
    checkpoint: photos finishing together share one commit instead of paying one each. Each
    batch writes first and checks the lease last, with the job row locked (Postgres) or the
    database's write lock held (SQLite), so nobody can take the lease over in between.
    A batch goes either through `begin` (an async connection) or, for a SQLite file, to
    `thread` in one trip.
    """

    def __init__(
        self,
        lease: Lease,
        dialect: str,
        *,
        begin: Callable[[], AbstractAsyncContextManager[AsyncConnection]] | None = None,
        thread: SqliteThread | None = None,
    ) -> None:
        self._lease = lease
        self._begin = begin
        self._thread = thread
        self._dialect = dialect
        self._statements: dict[type[Checkpoint], Any] = {}
        # Built once, like the writes: a batch is often two photos, and building its queries
        # cost more than running them.
        self._count_photos = (
            select(func.count())
            .select_from(Photo)
            .where(Photo.job_id == lease.job_id, Photo.id.in_(bindparam("ids", expanding=True)))
        )
        self._check_lease = _lease_query(lease, lock=True)

    async def write(self, updates: Sequence[tuple[int, Checkpoint]]) -> None:
        """Apply `(photo id, checkpoint)` in order, all or none; StaleLease if the lease is gone.

        LookupError (and nothing written) if a photo is not part of the job.
        """
        if not updates:
            return
        if self._thread is not None:
            await self._thread.run(self._write_batch, updates)
            return
        assert self._begin is not None
        async with self._begin() as conn:
            await conn.run_sync(self._write_batch, updates)

    def _write_batch(self, conn: Connection, updates: Sequence[tuple[int, Checkpoint]]) -> None:
        """The batch's statements, on a connection whose transaction the caller commits."""
        lease = self._lease
        ids = {photo_id for photo_id, _ in updates}
        found = conn.execute(self._count_photos, {"ids": sorted(ids)}).scalar_one()
        if found != len(ids):
            raise LookupError(f"a photo of this batch is not part of job {lease.job_id}")
        for kind, rows in _runs_of_same_kind(updates, lease.job_id, utcnow()):
            conn.execute(self._statement(kind), rows)
        if conn.execute(self._check_lease).first() is None:
            raise _stale(lease)

    def _statement(self, kind: type[Checkpoint]) -> Any:
        if kind not in self._statements:
            self._statements[kind] = self._build(kind)
        return self._statements[kind]

    def _build(self, kind: type[Checkpoint]) -> Any:
        if kind is SourceCheckpoint:
            return (
                update(Photo)
                .where(Photo.id == bindparam("p_id"), Photo.job_id == self._lease.job_id)
                .values(
                    md5=bindparam("p_md5"),
                    size=bindparam("p_size"),
                    mtime_ns=bindparam("p_mtime_ns"),
                )
            )
        upsert = upsert_into(self._dialect, PhotoPhase)
        changed = (
            ("failed_reason",)
            if kind is PhaseFailed
            else ("output", "size", "md5", "details", "done_at", "failed_reason")
        )
        return upsert.on_conflict_do_update(
            index_elements=[PhotoPhase.photo_id, PhotoPhase.phase],
            set_={column: upsert.excluded[column] for column in changed},
        )


def _runs_of_same_kind(
    updates: Sequence[tuple[int, Checkpoint]], job_id: str, now: datetime
) -> list[tuple[type[Checkpoint], list[dict[str, Any]]]]:
    """Consecutive checkpoints grouped by kind, order kept, as rows for one executemany."""
    runs: list[tuple[type[Checkpoint], list[dict[str, Any]]]] = []
    for photo_id, checkpoint in updates:
        row: dict[str, Any]
        if isinstance(checkpoint, SourceCheckpoint):
            row = {
                "p_id": photo_id,
                "p_md5": checkpoint.md5,
                "p_size": checkpoint.size,
                "p_mtime_ns": checkpoint.mtime_ns,
            }
        elif isinstance(checkpoint, PhaseDone):
            row = {
                "photo_id": photo_id,
                "job_id": job_id,
                "phase": checkpoint.phase,
                "output": checkpoint.output,
                "size": checkpoint.size,
                "md5": checkpoint.md5,
                "details": checkpoint.details,
                "done_at": now,
                "failed_reason": None,
            }
        else:
            row = {
                "photo_id": photo_id,
                "job_id": job_id,
                "phase": checkpoint.phase,
                "failed_reason": checkpoint.reason,
            }
        kind = type(checkpoint)
        if runs and runs[-1][0] is kind:
            runs[-1][1].append(row)
        else:
            runs.append((kind, [row]))
    return runs


async def _photo_records(
    conn: AsyncConnection, photos: ColumnElement[bool], phases: ColumnElement[bool]
) -> list[PhotoRecord]:
    """The photos matching `photos`, in id order, with their phase rows matching `phases`."""
    rows = (
        await conn.execute(
            select(Photo.id, Photo.rel_path, Photo.file_name, Photo.size, Photo.mtime_ns, Photo.md5)
            .where(photos)
            .order_by(Photo.id)
        )
    ).all()
    records = (
        await conn.execute(
            select(
                PhotoPhase.photo_id,
                PhotoPhase.phase,
                PhotoPhase.output,
                PhotoPhase.size,
                PhotoPhase.md5,
                PhotoPhase.details,
                PhotoPhase.done_at,
                PhotoPhase.failed_reason,
            ).where(phases)
        )
    ).all()
    found = {row[0]: PhotoRecord(*row) for row in rows}
    for photo_id, phase, *record in records:
        if photo_id in found:
            found[photo_id].phases[phase] = PhaseRecord(*record)
    return list(found.values())


async def _event(
    conn: AsyncConnection,
    job_id: str,
    kind: str,
    message: str,
    *,
    from_state: str | None = None,
    to_state: str | None = None,
    data: dict[str, Any] | None = None,
) -> None:
    await conn.execute(
        insert(Event).values(
            job_id=job_id,
            at=utcnow(),
            kind=kind,
            message=message,
            from_state=from_state,
            to_state=to_state,
            data=data,
        )
    )


async def _require_lease(conn: AsyncConnection, lease: Lease, *, lock: bool = False) -> None:
    if (await conn.execute(_lease_query(lease, lock=lock))).first() is None:
        raise _stale(lease)


def _lease_query(lease: Lease, *, lock: bool) -> Any:
    query = select(Job.id).where(_holds(lease))
    return query.with_for_update() if lock else query


def _stale(lease: Lease) -> StaleLease:
    return StaleLease(f"lost the lease of job {lease.job_id[:8]} (epoch {lease.epoch})")


async def _explain_refusal(conn: AsyncConnection, lease: Lease, expected: str) -> None:
    await _require_lease(conn, lease)
    state = (await conn.execute(select(Job.state).where(Job.id == lease.job_id))).scalar_one()
    raise StateConflict(f"job {lease.job_id[:8]} is {state}, expected {expected}")


def _fmt(moment: datetime | None) -> str:
    return moment.strftime("%H:%M:%S UTC") if moment else "unknown"
