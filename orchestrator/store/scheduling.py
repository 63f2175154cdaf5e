"""The daemons' statements over the job table: queue, claim due jobs, wake, lock a folder.

Several daemons share one Postgres: a claim locks the due rows it takes with `FOR UPDATE SKIP
LOCKED`, so two daemons never take the same job and never wait for each other. On SQLite (one
daemon, but other commands write too) the claim runs in a `BEGIN IMMEDIATE` transaction, which
takes the database's write lock before the first read.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    ColumnElement,
    Select,
    and_,
    case,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection

from orchestrator.states import TERMINAL_STATES
from orchestrator.store.clock import database_now
from orchestrator.store.models import LIVE_DAEMON_JOB, Callback, Event, Job, utcnow
from orchestrator.store.queries import Lease, Store

WAKE_CHANNEL = "orchestrator_wake"
"""The Postgres NOTIFY channel on which daemons hear that a job is due now."""

_DATABASE_ERRORS: tuple[type[BaseException], ...] = (DBAPIError, PoolTimeout, OSError, TimeoutError)


def database_errors(*also: type[BaseException]) -> tuple[type[BaseException], ...]:
    """What a database that is down, restarting or unreachable raises (and `also`).

    With asyncpg's own errors once that driver is loaded (a failed connect escapes SQLAlchemy's
    wrapping). Only a Postgres engine loads it, and a driver never loaded raises nothing, so a
    command on SQLite does not pay for importing it.
    """
    asyncpg = sys.modules.get("asyncpg")
    driver = () if asyncpg is None else (asyncpg.PostgresError, asyncpg.InterfaceError)
    return (*also, *_DATABASE_ERRORS, *driver)


def is_outage(error: BaseException) -> bool:
    """Whether `error` says the database went away or refused to work for now (a lost or
    refused connection, a lock held too long), not that a statement was wrong.

    A drive that ends so did nothing wrong and goes on once the database answers; anything
    else from the database (a constraint broken, bad SQL) is a bug, parked as one.
    """
    if isinstance(error, DBAPIError):
        return error.connection_invalidated or isinstance(error, OperationalError | InterfaceError)
    asyncpg = sys.modules.get("asyncpg")
    if asyncpg is not None and isinstance(
        error, asyncpg.InterfaceError | asyncpg.PostgresConnectionError
    ):
        return True
    return isinstance(error, PoolTimeout | ConnectionError)


def is_live() -> ColumnElement[bool]:
    """The job still has work to do (it is in no terminal state)."""
    return Job.state.not_in(TERMINAL_STATES)


@dataclass(frozen=True)
class Claim:
    """A job this daemon may drive now, and whose expired lease it took, if any."""

    lease: Lease
    previous_owner: str | None


def _lease_free(now: datetime) -> ColumnElement[bool]:
    return or_(Job.lease_owner.is_(None), Job.lease_expires_at < now)


def _due(now: datetime) -> ColumnElement[bool]:
    return and_(
        LIVE_DAEMON_JOB,
        or_(Job.wake_at.is_(None), Job.wake_at <= now),
        _lease_free(now),
    )


def due_jobs_query(now: datetime, limit: int) -> Select[str, str | None]:
    """The due jobs a claim takes at `now`, under way first, locked (skipped if locked)."""
    return (
        select(Job.id, Job.lease_owner)
        .where(_due(now))
        .order_by(Job.wake_at.is_(None), func.coalesce(Job.wake_at, Job.created_at), Job.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )


@asynccontextmanager
async def write_transaction(store: Store) -> AsyncIterator[AsyncConnection]:
    """A transaction that holds the write lock from its first statement on SQLite."""
    async with store.engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            await conn.rollback()
            raise
        await conn.commit()


async def claim_due_jobs(store: Store, owner: str, ttl: float, limit: int) -> list[Claim]:
    """Lease up to `limit` due daemon jobs to `owner`.

    Due: queued for the daemons, not finished, `wake_at` passed (or unset), and no live lease
    (free, or expired because its worker died). Jobs under way (woken by a callback or a poll:
    `wake_at` set) go before new ones, so started work finishes first and a callback is acted
    on at the next free slot; within each group the longest-waiting goes first. Each claim
    bumps the lease epoch, so writes made under any older lease are refused. Callbacks already
    in the inbox count as consumed: the drive about to start asks Imagen for the status anyway.
    """
    async with write_transaction(store) as conn:
        return await _claim(conn, await database_now(conn), owner, ttl, limit)


async def claim_and_look_ahead(
    store: Store, owner: str, ttl: float, limit: int
) -> tuple[list[Claim], float | None]:
    """`claim_due_jobs`, and then `next_due_in`, in one transaction: a scheduler's whole look."""
    async with write_transaction(store) as conn:
        now = await database_now(conn)
        claims = await _claim(conn, now, owner, ttl, limit)
        return claims, await _next_due_in(conn, now, owner)


async def take_back_stranded(store: Store, owner: str, busy: Collection[str]) -> list[str]:
    """Give back the leases `owner` holds on jobs not in `busy`; the jobs' ids.

    When the database goes away under a daemon, the drives and polls it was making end
    without giving their leases back, and nobody else may take them before they expire (a
    lease TTL later). The daemon knows which of its jobs it still works on (`busy`); every
    other lease in its name is stranded, and giving it back lets the job go on as soon as the
    database answers. Never another owner's lease: the statement names this owner. A poll of
    this daemon's in flight at that moment loses its write (fenced) and is asked again.
    """
    async with write_transaction(store) as conn:
        taken_back = await conn.execute(
            update(Job)
            .where(Job.lease_owner == owner, Job.id.not_in(list(busy)))
            .values(lease_owner=None, lease_expires_at=None)
            .returning(Job.id)
        )
        return list(taken_back.scalars())


async def _claim(
    conn: AsyncConnection, now: datetime, owner: str, ttl: float, limit: int
) -> list[Claim]:
    due = (await conn.execute(due_jobs_query(now, limit))).all()
    if not due:
        return []
    ids = [job_id for job_id, _ in due]
    epochs = {
        job_id: epoch
        for job_id, epoch in await conn.execute(
            update(Job)
            .where(Job.id.in_(ids), _lease_free(now))
            .values(
                lease_owner=owner,
                lease_expires_at=now + timedelta(seconds=ttl),
                lease_epoch=Job.lease_epoch + 1,
                poll_at=None,  # the drive polls; if it waits again, it sets the next poll
            )
            .returning(Job.id, Job.lease_epoch)
        )
    }
    await conn.execute(
        update(Callback)
        .where(Callback.job_id.in_(ids), Callback.processed_at.is_(None))
        .values(processed_at=now)
    )
    claims = [
        Claim(Lease(job_id, owner, int(epochs[job_id])), previous)
        for job_id, previous in due
        if job_id in epochs
    ]
    for claim in claims:
        if claim.previous_owner is not None:
            await conn.execute(
                insert(Event).values(
                    job_id=claim.lease.job_id,
                    at=now,
                    kind="lease",
                    message="lease taken over from a worker that stopped renewing it",
                    data={"previous_owner": claim.previous_owner, "epoch": claim.lease.epoch},
                )
            )
    return claims


async def next_due_in(store: Store, owner: str) -> float | None:
    """Seconds until the next daemon job not driven by `owner` becomes claimable (None: no
    such job), by the database's clock, on which claims judge it.

    A free job is due at its `wake_at` (or at once); a leased one when its lease expires, or at
    its `wake_at` if that is later. A job waiting for a poll is due at its deadline (its
    `wake_at`): its polls are the poller's (`store/polling.py`).
    """
    async with store.engine.connect() as conn:
        return await _next_due_in(conn, await database_now(conn), owner)


async def _next_due_in(conn: AsyncConnection, now: datetime, owner: str) -> float | None:
    when = case(
        (Job.lease_owner.is_(None), func.coalesce(Job.wake_at, Job.created_at)),
        (or_(Job.wake_at.is_(None), Job.lease_expires_at > Job.wake_at), Job.lease_expires_at),
        else_=Job.wake_at,
    )
    earliest: datetime | None = (
        await conn.execute(
            select(func.min(when)).where(
                LIVE_DAEMON_JOB,
                or_(Job.lease_owner.is_(None), Job.lease_owner != owner),
            )
        )
    ).scalar_one()
    if earliest is None:
        return None
    return (earliest - now).total_seconds()


async def queue_for_daemon(store: Store, job_ids: Sequence[str]) -> None:
    """Hand jobs to the daemons (they take them once due) and wake the listening ones."""
    if not job_ids:
        return
    async with store.engine.begin() as conn:
        await conn.execute(update(Job).where(Job.id.in_(job_ids)).values(queued_for_daemon=True))
        await notify_wake(conn, job_ids[0])


async def wake_daemons(store: Store, job_id: str) -> None:
    """Tell listening daemons at once that a job is due again (a retry); Postgres only."""
    if store.engine.dialect.name != "postgresql":
        return
    async with store.engine.begin() as conn:
        await notify_wake(conn, job_id)


async def notify_wake(conn: AsyncConnection, job_id: str) -> None:
    """Tell every listening daemon, when the transaction commits, that a job is due (Postgres)."""
    if conn.dialect.name == "postgresql":
        await conn.execute(select(func.pg_notify(WAKE_CHANNEL, job_id)))


async def wake_if_called_back(store: Store, job_id: str) -> bool:
    """Make a waiting job due now if a callback arrived while it was being driven.

    The drive polled before that callback and set a later `wake_at`; without this the news
    would wait for the next poll.
    """
    async with store.engine.begin() as conn:
        woken = await conn.execute(
            update(Job)
            .where(
                Job.id == job_id,
                Job.lease_owner.is_(None),
                is_live(),
                Job.wake_at.is_not(None),
                exists().where(Callback.job_id == job_id, Callback.processed_at.is_(None)),
            )
            .values(wake_at=utcnow())
        )
        if woken.rowcount == 1:
            await notify_wake(conn, job_id)
    return bool(woken.rowcount == 1)


async def jobs_by_state(store: Store) -> dict[str, int]:
    """How many jobs the database holds in each state."""
    async with store.engine.connect() as conn:
        rows = (await conn.execute(select(Job.state, func.count()).group_by(Job.state))).all()
    return {state: int(count) for state, count in rows}


@asynccontextmanager
async def planning_lock(store: Store, source: str) -> AsyncIterator[None]:
    """Hold the folder while it becomes jobs, so two daemons never plan it twice (Postgres).

    On SQLite only one daemon runs, and planning by other commands is the user's own doing.
    """
    if store.engine.dialect.name != "postgresql":
        yield
        return
    async with store.engine.connect() as conn:
        key = func.hashtext(source)
        await conn.execute(select(func.pg_advisory_lock(key)))
        await conn.commit()
        try:
            yield
        finally:
            await conn.execute(select(func.pg_advisory_unlock(key)))
            await conn.commit()
