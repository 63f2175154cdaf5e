"""Reads and writes of shoots: what a photographer names, each holding its jobs (one per Imagen
project). A shoot without jobs (its jobs pruned) is never listed."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from orchestrator.store.models import LIVE_JOB, Job, Photo, Shoot
from orchestrator.store.queries import (
    MIN_ID_PREFIX,
    SHOWN_CANDIDATES,
    JobNotFound,
    Lease,
    StaleLease,
    Store,
    looks_like_id,
    looks_like_path,
    resolved_folder,
)


@dataclass(frozen=True)
class ShootJobs:
    """A shoot with its jobs (oldest first), each with its photo count."""

    shoot: Shoot
    jobs: list[tuple[Job, int]]


def _has_jobs(condition: ColumnElement[bool] | None = None) -> ColumnElement[bool]:
    """The shoot has a job (that fits `condition`)."""
    match = Job.shoot_id == Shoot.id
    return exists().where(match if condition is None else and_(match, condition))


async def get_shoot(store: Store, shoot_id: str) -> Shoot:
    """The shoot with this exact id."""
    async with _session(store) as session:
        shoot = await session.get(Shoot, shoot_id)
    if shoot is None:
        raise JobNotFound(f"no shoot {shoot_id}")
    return shoot


async def current_shoot(store: Store, source: str) -> Shoot | None:
    """The newest shoot of the folder `source` that has jobs (None: the folder has none)."""
    async with _session(store) as session:
        return await session.scalar(
            select(Shoot)
            .where(Shoot.source == source, _has_jobs())
            .order_by(Shoot.created_at.desc(), Shoot.id.desc())
            .limit(1)
        )


async def resolve_shoot(store: Store, ref: str) -> Shoot:
    """The shoot `ref` names: its id (or its first 4+ characters), its name or folder, or any
    way of naming one of its jobs (`Store.resolve_job`). A name or folder that fits shoots of
    several folders is refused with each candidate listed; a folder edited `--again` names
    its newest shoot (the others by their ids)."""
    text = ref.strip()
    if not text:
        raise JobNotFound("give a shoot's id, name or folder; `orchestrator status` lists them")
    if looks_like_id(text) and len(text) >= MIN_ID_PREFIX:
        by_id = await _shoots_where(store, Shoot.id.startswith(text.lower(), autoescape=True))
        if len(by_id) == 1:
            return by_id[0]
    if looks_like_path(text):
        found = await _shoots_where(store, Shoot.source == resolved_folder(text))
    else:
        found = await _shoots_where(
            store,
            or_(Shoot.name == text, Shoot.source.endswith(f"{os.sep}{text}", autoescape=True)),
        )
    if len({shoot.source for shoot in found}) == 1:
        found = found[:1]  # one folder edited `--again`: its newest shoot
    if len(found) > 1:
        listed = "; ".join(
            f"{s.id[:8]} {s.name} ({s.source}, {s.created_at:%Y-%m-%d})"
            for s in found[:SHOWN_CANDIDATES]
        )
        more = " …" if len(found) > SHOWN_CANDIDATES else ""
        raise JobNotFound(f"{text!r} fits several shoots: {listed}{more}; give the id of one")
    if found:
        return found[0]
    job = await store.resolve_job(text)
    return await get_shoot(store, job.shoot_id)


async def jobs_named(store: Store, ref: str) -> tuple[Shoot, list[Job]]:
    """The shoot `ref` names and the jobs of it `ref` means, oldest first: the one job it names
    (by its id, or a name or folder no other job has) when the shoot has several; else every
    job of the shoot (RAW, JPEG and follow-ups)."""
    shoot = await resolve_shoot(store, ref)
    jobs = [job for job, _ in (await jobs_of_shoots(store, [shoot.id])).get(shoot.id, [])]
    try:
        named = await store.resolve_job(ref)
    except JobNotFound:
        return shoot, jobs
    if (
        named.shoot_id == shoot.id
        and len(jobs) > 1
        and not shoot.id.startswith(ref.strip().lower())
    ):
        return shoot, [named]
    return shoot, jobs


async def _shoots_where(store: Store, condition: ColumnElement[bool]) -> list[Shoot]:
    """Up to `SHOWN_CANDIDATES` + 1 shoots with jobs that fit, newest first."""
    query = (
        select(Shoot)
        .where(condition, _has_jobs())
        .order_by(Shoot.created_at.desc(), Shoot.id.desc())
        .limit(SHOWN_CANDIDATES + 1)
    )
    async with _session(store) as session:
        return list((await session.scalars(query)).all())


async def list_shoots(
    store: Store,
    *,
    live: bool | None = None,
    state: str | None = None,
    limit: int | None = None,
    shoot_ids: Sequence[str] | None = None,
) -> list[ShootJobs]:
    """Shoots with their jobs, newest first: every one, the live ones (a job with work left,
    `live=True`) or the finished ones, those with a job in `state`, or those of `shoot_ids`;
    at most `limit` of them."""
    query = select(Shoot).order_by(Shoot.created_at.desc(), Shoot.id.desc()).limit(limit)
    if live is not None:
        query = query.where(_has_jobs(LIVE_JOB) if live else ~_has_jobs(LIVE_JOB))
    if state is not None:
        query = query.where(_has_jobs(Job.state == state))
    if shoot_ids is not None:
        query = query.where(Shoot.id.in_(list(shoot_ids)))
    query = query.where(_has_jobs())
    async with _session(store) as session:
        shoots = list((await session.scalars(query)).all())
    jobs = await jobs_of_shoots(store, [s.id for s in shoots])
    return [ShootJobs(s, jobs.get(s.id, [])) for s in shoots]


async def jobs_of_shoots(
    store: Store, shoot_ids: Sequence[str]
) -> dict[str, list[tuple[Job, int]]]:
    """The jobs of each shoot, oldest first, with their photo counts (two queries)."""
    if not shoot_ids:
        return {}
    async with _session(store) as session:
        jobs = list(
            (
                await session.scalars(
                    select(Job)
                    .where(Job.shoot_id.in_(list(shoot_ids)))
                    .order_by(Job.created_at, Job.id)
                )
            ).all()
        )
        counted = await session.execute(
            select(Photo.job_id, func.count())
            .where(Photo.job_id.in_([job.id for job in jobs]))
            .group_by(Photo.job_id)
        )
        counts = {job_id: int(n) for job_id, n in counted.all()}
    found: dict[str, list[tuple[Job, int]]] = {}
    for job in jobs:
        found.setdefault(job.shoot_id, []).append((job, counts.get(job.id, 0)))
    return found


async def count_shoots(store: Store, *, live: bool) -> int:
    """How many shoots are live (a job with work left), or finished."""
    async with store.engine.connect() as conn:
        found = await conn.scalar(
            select(func.count())
            .select_from(Shoot)
            .where(_has_jobs(), _has_jobs(LIVE_JOB) if live else ~_has_jobs(LIVE_JOB))
        )
    return int(found or 0)


async def set_keywords(
    store: Store, shoot_id: str, keywords: Sequence[str], leases: Sequence[Lease]
) -> None:
    """Replace the shoot's own keywords, and those in the spec of each of its jobs (each held
    by one of `leases`), in one transaction; StaleLease if a lease was lost."""
    async with store.engine.begin() as conn:
        for lease in leases:
            options = await conn.scalar(select(Job.options).where(Job.id == lease.job_id))
            kept = {k: v for k, v in dict(options or {}).items() if k != "keywords"}
            written = await conn.execute(
                update(Job)
                .where(
                    Job.id == lease.job_id,
                    Job.lease_owner == lease.owner,
                    Job.lease_epoch == lease.epoch,
                )
                .values(options={**kept, **({"keywords": list(keywords)} if keywords else {})})
            )
            if written.rowcount != 1:
                raise StaleLease(f"job {lease.job_id[:8]}: its lease was taken over")
        await conn.execute(
            update(Shoot).where(Shoot.id == shoot_id).values(keywords=list(keywords))
        )


def _session(store: Store) -> AsyncSession:
    return AsyncSession(store.engine, expire_on_commit=False)
