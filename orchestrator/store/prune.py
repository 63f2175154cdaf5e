"""Keeping a season's database small: finished jobs past an age, and spent callbacks, removed.

A studio's daemon runs for months; every job leaves its photos, their phases and its events, and
every callback stays in the inbox once acted on. `prune` removes finished jobs (completed,
cancelled or failed) that finished more than a given age ago, with everything of theirs (the
foreign keys cascade), and callbacks processed more than a day ago. It never touches a live job:
each delete re-checks, in its own statement, that the job is still finished and still old (a
`retry` that moves a failed job back at that moment wins). Then it gives the space back: SQLite
checkpoints its log and rewrites the file (VACUUM), Postgres vacuums the tables for reuse.

The jobs it keeps have their history folded: a job that lives long (paused for days while
Imagen is down, restarted daemons taking its lease over) writes the same kind of line again and
again. Of each repetitive kind (`FOLDED_KINDS`) older than a day, a job keeps its first and last
line, and the ones between become one `folded` line in their place, which says how many there
were, of what kind and over which span. Transitions, callbacks, retries, notes and errors are
never folded, and folding touches only history lines, never a job's state.

Imagga's kept answers (`tag_results`) are not pruned: they are what a later `keywords
--reselect` or a rerun of an old shoot reads instead of paying again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, Select, and_, delete, func, insert, not_, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import InstrumentedAttribute

from orchestrator.states import TERMINAL_STATES
from orchestrator.store.clock import database_now
from orchestrator.store.db import sqlite_path
from orchestrator.store.models import Callback, Event, Job, Photo, Shoot
from orchestrator.store.queries import Store

CALLBACKS_KEPT = timedelta(days=1)
"""How long a processed callback stays: long enough to absorb Imagen's late duplicates."""

BATCH = 500
"""Jobs deleted (or runs of lines folded) per transaction: a first prune of a long season never
holds the writers long."""

FOLDED_KINDS = ("paused", "resume", "interrupted", "lease")
"""History lines that repeat while a job waits out trouble: kept first and last, folded between."""
FOLD_AFTER = timedelta(days=1)
"""How old a repetitive line must be to be folded: the last day's history stays line by line."""
SHOOT_GRACE = timedelta(days=1)
"""How old a shoot without jobs must be to go: a planner makes a shoot, then its first job."""

_PRUNED_TABLES = ("shoots", "jobs", "photos", "photo_phases", "events", "callbacks")


@dataclass(frozen=True)
class PruneReport:
    """What a prune removed (or, dry, would remove) and the database's size around it."""

    cutoff: datetime
    """Jobs that finished before this moment (the database's clock) were removed."""
    dry_run: bool
    jobs: int
    photos: int
    events: int
    callbacks: int
    """Processed callbacks removed on their own (a removed job's go with it, uncounted)."""
    bytes_before: int | None
    """The SQLite file's size with its log, before; None on Postgres."""
    bytes_after: int | None
    events_folded: int = 0
    """History lines of the jobs kept that were folded into `folded` lines."""
    shoots: int = 0
    """Shoots removed because none of their jobs is left."""


def _finished_before(cutoff: datetime) -> ColumnElement[bool]:
    return and_(
        Job.state.in_(sorted(TERMINAL_STATES)),
        func.coalesce(Job.finished_at, Job.updated_at) < cutoff,
    )


def _spent_callbacks(now: datetime) -> ColumnElement[bool]:
    return and_(Callback.processed_at.is_not(None), Callback.processed_at < now - CALLBACKS_KEPT)


async def prune(store: Store, *, older_than: timedelta, dry_run: bool = False) -> PruneReport:
    """Remove finished jobs older than `older_than` and spent callbacks; return what went."""
    before = _file_bytes(store)
    async with store.engine.connect() as conn:
        now = await database_now(conn)
    cutoff = now - older_than
    jobs = photos = events = 0
    async with store.engine.connect() as conn:
        old_jobs = list(
            (await conn.execute(select(Job.id).where(_finished_before(cutoff)))).scalars()
        )
        callbacks = await _count(conn, select(func.count()).where(_spent_callbacks(now)))
    for start in range(0, len(old_jobs), BATCH):
        batch = old_jobs[start : start + BATCH]
        async with store.engine.begin() as conn:
            photos += await _count(conn, _count_of(Photo.job_id, batch))
            events += await _count(conn, _count_of(Event.job_id, batch))
            if dry_run:
                jobs += len(batch)
                continue
            removed = await conn.execute(
                delete(Job).where(Job.id.in_(batch), _finished_before(cutoff))
            )
            jobs += removed.rowcount
    folded = await _fold_history(store, cutoff, now - FOLD_AFTER, dry_run=dry_run)
    emptied = _emptied_shoots(cutoff, now, dry_run=dry_run)
    async with store.engine.begin() as conn:
        if dry_run:
            shoots = await _count(conn, select(func.count()).where(emptied))
        else:
            shoots = (await conn.execute(delete(Shoot).where(emptied))).rowcount
            await conn.execute(delete(Callback).where(_spent_callbacks(now)))
    if not dry_run:
        await _give_space_back(store)
    return PruneReport(
        cutoff=cutoff,
        dry_run=dry_run,
        jobs=jobs,
        photos=photos,
        events=events,
        callbacks=callbacks,
        bytes_before=before,
        bytes_after=_file_bytes(store),
        events_folded=folded,
        shoots=shoots,
    )


def _emptied_shoots(cutoff: datetime, now: datetime, *, dry_run: bool) -> ColumnElement[bool]:
    """Shoots left without jobs (a dry run: that the prune would leave so), made long enough
    ago that no planner is still adding their first job."""
    jobs = select(Job.id).where(Job.shoot_id == Shoot.id)
    if dry_run:
        jobs = jobs.where(not_(_finished_before(cutoff)))
    return and_(Shoot.created_at < now - SHOOT_GRACE, not_(jobs.exists()))


async def _fold_history(
    store: Store, prune_cutoff: datetime, fold_cutoff: datetime, *, dry_run: bool
) -> int:
    """Fold the repetitive lines older than `fold_cutoff` of the jobs a prune keeps; how many.

    Of each run (one job, one kind) of three or more such lines, the first and last stay; the
    ones between are deleted and one `folded` line takes the id of the first of them, so the
    history (read in id order) still tells the story in order.
    """
    kept_jobs = select(Job.id).where(not_(_finished_before(prune_cutoff)))
    old_repeats = and_(
        Event.kind.in_(FOLDED_KINDS), Event.at < fold_cutoff, Event.job_id.in_(kept_jobs)
    )
    async with store.engine.connect() as conn:
        runs = (
            await conn.execute(
                select(
                    Event.job_id, Event.kind, func.count(), func.min(Event.id), func.max(Event.id)
                )
                .where(old_repeats)
                .group_by(Event.job_id, Event.kind)
                .having(func.count() > 2)
            )
        ).all()
    folded = sum(int(count) - 2 for _, _, count, _, _ in runs)
    if dry_run:
        return folded
    for start in range(0, len(runs), BATCH):
        async with store.engine.begin() as conn:
            for job_id, kind, _, first_id, last_id in runs[start : start + BATCH]:
                await _fold_run(conn, job_id, kind, first_id, last_id, fold_cutoff)
    return folded


async def _fold_run(
    conn: AsyncConnection, job_id: str, kind: str, first_id: int, last_id: int, cutoff: datetime
) -> None:
    between = and_(
        Event.job_id == job_id,
        Event.kind == kind,
        Event.at < cutoff,
        Event.id > first_id,
        Event.id < last_id,
    )
    place, since, until, count = (
        await conn.execute(
            select(func.min(Event.id), func.min(Event.at), func.max(Event.at), func.count()).where(
                between
            )
        )
    ).one()
    if not count or not (await conn.execute(delete(Event).where(between))).rowcount:
        return  # nothing between, or another prune folded it meanwhile
    await conn.execute(
        insert(Event).values(
            id=place,
            job_id=job_id,
            at=since,
            kind="folded",
            message=(
                f"{count} more '{kind}' lines from {since:%Y-%m-%d %H:%M} to "
                f"{until:%Y-%m-%d %H:%M} UTC, folded into this one"
            ),
            data={
                "kind": kind,
                "count": int(count),
                "first": since.isoformat(),
                "last": until.isoformat(),
            },
        )
    )


def _count_of(column: InstrumentedAttribute[str], job_ids: Sequence[str]) -> Select[int]:
    return select(func.count()).where(column.in_(job_ids))


async def _count(conn: AsyncConnection, query: Select[int]) -> int:
    return int((await conn.execute(query)).scalar_one())


async def _give_space_back(store: Store) -> None:
    """SQLite: fold the log into the file and rewrite it; Postgres: vacuum for reuse."""
    async with store.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        if conn.dialect.name == "postgresql":
            for table in _PRUNED_TABLES:
                await conn.exec_driver_sql(f"VACUUM (ANALYZE) {table}")
        else:
            await conn.exec_driver_sql("VACUUM")
            await conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def _file_bytes(store: Store) -> int | None:
    path = sqlite_path(str(store.engine.url))
    if path is None or store.engine.dialect.name != "sqlite":
        return None
    files = [path, path.with_name(path.name + "-wal")]
    return sum(file.stat().st_size for file in files if file.exists())


async def stored_jobs(store: Store, ids: Sequence[str]) -> set[str]:
    """Those of `ids` that are jobs of the database (what a cache of jobs may keep)."""
    found: set[str] = set()
    async with store.engine.connect() as conn:
        for start in range(0, len(ids), _ID_BATCH):
            batch = list(ids[start : start + _ID_BATCH])
            found.update(await conn.scalars(select(Job.id).where(Job.id.in_(batch))))
    return found


_ID_BATCH = 500
"""Job ids asked about in one statement (well under SQLite's bound-variable limit)."""
