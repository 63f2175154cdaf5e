"""Grouped counts over a job's photo phases, for the views of jobs (lists, pages, summaries):
what finished, what failed, how fast; each one grouped query over the rows asked about, never
the photos' rows themselves, whatever the size of the job."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from sqlalchemy import (
    and_,
    case,
    func,
    or_,
    select,
    type_coerce,
)

from orchestrator.store.models import (
    FAILED_PHASE,
    Photo,
    PhotoPhase,
    UTCDateTime,
)
from orchestrator.store.queries import Store


@dataclass(frozen=True)
class PhaseCount:
    """How many of a job's photos finished a phase, and how many failed it for good."""

    done: int
    failed: int


@dataclass(frozen=True)
class PhaseTally:
    """What a job's photos did in the phase its stage records (see `phase_tallies`)."""

    done: int = 0
    failed: int = 0
    bytes_done: int = 0
    """Bytes of the photos done: the sources' sizes for uploads, the outputs' otherwise."""
    bytes_total: int | None = None
    """The sources' sizes in all, for uploads only (downloads learn theirs as they go)."""
    recent: int = 0
    """Photos done since the time asked for."""
    recent_bytes: int = 0
    first_recent_at: datetime | None = None
    decided: int = 0
    """Photos done with a reviewer's decision in their details."""


async def phase_counts(store: Store, job_id: str) -> dict[str, PhaseCount]:
    """Per phase, how many of the job's photos finished it and how many failed it for good:
    two grouped counts, each read from its index (`ix_photo_phases_job_phase_done`,
    `ix_photo_phases_failed`), never the rows."""
    async with store.engine.connect() as conn:
        done = (
            await conn.execute(
                select(PhotoPhase.phase, func.count(PhotoPhase.done_at))
                .where(PhotoPhase.job_id == job_id)
                .group_by(PhotoPhase.phase)
            )
        ).all()
        failed = dict(
            (
                await conn.execute(
                    select(PhotoPhase.phase, func.count())
                    .where(PhotoPhase.job_id == job_id, FAILED_PHASE)
                    .group_by(PhotoPhase.phase)
                )
            ).all()
        )
    return {phase: PhaseCount(int(n), int(failed.get(phase, 0))) for phase, n in done}


async def phase_tallies(
    store: Store, phases: Mapping[str, str], *, recent_since: datetime
) -> dict[str, PhaseTally]:
    """For each job of `phases` (job id → the phase its stage records), what its photos
    did in that phase: done, failed, bytes done, those done since `recent_since`, and
    decisions taken (a review's). Grouped counts over those jobs' rows only."""
    if not phases:
        return {}
    done = PhotoPhase.done_at.is_not(None)
    recent = PhotoPhase.done_at >= recent_since
    size = case((PhotoPhase.phase == "upload", Photo.size), else_=PhotoPhase.size)
    decided = PhotoPhase.details["approved"].as_boolean().is_not(None)
    query = (
        select(
            PhotoPhase.job_id,
            func.count(PhotoPhase.done_at),
            func.sum(case((FAILED_PHASE, 1), else_=0)),
            func.sum(case((done, func.coalesce(size, 0)), else_=0)),
            func.sum(case((recent, 1), else_=0)),
            func.sum(case((recent, func.coalesce(size, 0)), else_=0)),
            type_coerce(func.min(case((recent, PhotoPhase.done_at))), UTCDateTime()),
            func.sum(case((and_(done, decided), 1), else_=0)),
        )
        .join(Photo, Photo.id == PhotoPhase.photo_id)
        .where(
            or_(
                *(
                    and_(PhotoPhase.job_id == job_id, PhotoPhase.phase == phase)
                    for job_id, phase in phases.items()
                )
            )
        )
        .group_by(PhotoPhase.job_id)
    )
    uploading = [job_id for job_id, phase in phases.items() if phase == "upload"]
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
        sizes = dict(
            (
                await conn.execute(
                    select(Photo.job_id, func.sum(Photo.size))
                    .where(Photo.job_id.in_(uploading))
                    .group_by(Photo.job_id)
                )
            ).all()
            if uploading
            else []
        )
    found = {job_id: PhaseTally() for job_id in phases}
    for job_id, n_done, n_failed, bytes_done, n_recent, recent_bytes, first, n_decided in rows:
        found[job_id] = PhaseTally(
            done=int(n_done),
            failed=int(n_failed or 0),
            bytes_done=int(bytes_done or 0),
            recent=int(n_recent or 0),
            recent_bytes=int(recent_bytes or 0),
            first_recent_at=first,
            decided=int(n_decided or 0),
        )
    for job_id, total in sizes.items():
        found[job_id] = replace(found[job_id], bytes_total=int(total or 0))
    return found


async def failing_photos(store: Store, job_ids: Sequence[str]) -> dict[str, int]:
    """How many photos of each job have a phase that failed and was not done since."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(PhotoPhase.job_id, func.count(func.distinct(PhotoPhase.photo_id)))
            .where(
                PhotoPhase.job_id.in_(job_ids),
                PhotoPhase.failed_reason.is_not(None),
                PhotoPhase.failed_reason != "",
            )
            .group_by(PhotoPhase.job_id)
        )
        counted = {job_id: int(n) for job_id, n in rows.all()}
    return {job_id: counted.get(job_id, 0) for job_id in job_ids}


async def failures(store: Store, job_id: str) -> list[tuple[str, str, str]]:
    """(photo path, phase, reason) of every phase of the job's photos that failed for
    good: read from the failed rows alone, whatever the job's size."""
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            select(Photo.rel_path, PhotoPhase.phase, PhotoPhase.failed_reason)
            .join(Photo, Photo.id == PhotoPhase.photo_id)
            .where(
                PhotoPhase.job_id == job_id,
                PhotoPhase.failed_reason.is_not(None),
                PhotoPhase.failed_reason != "",
            )
            .order_by(Photo.id, PhotoPhase.phase)
        )
        return [(str(path), str(phase), str(reason)) for path, phase, reason in rows.all()]
