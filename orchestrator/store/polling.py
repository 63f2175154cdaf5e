"""The daemons' safety-net status polls of jobs waiting on Imagen: one budget, two transactions.

A job waiting on Imagen holds no lease and no task; its `poll_at` says when to ask Imagen
again, and its `wake_at` is the wait's deadline. Every daemon's poller takes the due polls,
longest overdue first, only as many as the one token bucket in `poll_budget` grants (shared by
every daemon on the database: Imagen's limits are per account, not per daemon), and leases the
jobs for the moment of the poll (`take_polls`, one transaction). After asking Imagen it writes
every job's next poll, or makes it due for a drive when Imagen is done, gives the leases back
and wakes the daemons (`settle_polls`, one transaction). A batch of any size costs those two.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, bindparam, func, or_, select, update

from orchestrator.store.clock import database_now
from orchestrator.store.db import upsert_into
from orchestrator.store.models import LIVE_DAEMON_JOB, Job, PollBudget, utcnow
from orchestrator.store.queries import Lease, Store
from orchestrator.store.scheduling import notify_wake, write_transaction

BUDGET = "imagen"
"""The budget's row: daemons sharing a database share one Imagen account."""


@dataclass(frozen=True)
class DuePoll:
    """A waiting job leased to this daemon for one status poll (a grant lists them longest
    overdue first)."""

    lease: Lease
    state: str
    project_uuid: str
    deadline: datetime | None
    """When the wait gives up (the job's `wake_at`)."""


@dataclass(frozen=True)
class Grant:
    """What one look at the budget gave: the polls to make now, and when to look again."""

    polls: list[DuePoll]
    look_again_in: float | None
    """Seconds until a poll is due or the budget has room again; None: no job waits for one."""
    spent: bool = False
    """The budget had no room: other daemons spent it."""


@dataclass(frozen=True)
class Polled:
    """What became of one poll: the job's next poll, or None to hand it to a drive now."""

    lease: Lease
    next_poll: datetime | None


def _waiting_for_poll(states: Collection[str], now: datetime) -> ColumnElement[bool]:
    return and_(
        Job.poll_at.is_not(None),
        LIVE_DAEMON_JOB,
        Job.state.in_(states),
        or_(Job.lease_owner.is_(None), Job.lease_expires_at < now),
    )


async def take_polls(
    store: Store,
    owner: str,
    *,
    states: Collection[str],
    rate: float,
    burst: float,
    ttl: float,
) -> Grant:
    """Lease the due polls the budget allows now, longest overdue first (one transaction).

    The budget is a generic cell rate algorithm on the database's clock: `next_at` moves on by
    `1 / rate` per poll granted and may lag the clock by at most `burst` seconds, so over any
    window of W seconds the daemons together are granted at most `rate * (W + burst)` polls.
    Its row is locked for the grant, so two daemons never spend the same room.
    """
    async with write_transaction(store) as conn:
        now = await database_now(conn)
        budget = select(PollBudget.next_at).where(PollBudget.name == BUDGET).with_for_update()
        row = (await conn.execute(budget)).first()
        if row is None:  # a database made without the migrations (`create_all`)
            await conn.execute(
                upsert_into(conn.dialect.name, PollBudget)
                .values(name=BUDGET, next_at=None)
                .on_conflict_do_nothing(index_elements=["name"])
            )
            row = (await conn.execute(budget)).one()
        next_at: datetime | None = row.next_at
        floor = now - timedelta(seconds=burst)
        start = floor if next_at is None or next_at < floor else next_at
        room = math.floor((now - start).total_seconds() * rate + 1e-9)
        if room < 1:
            # Another daemon spent it: look again when a whole batch has built up.
            return Grant([], _until_full(start, burst, now), spent=True)
        due = (
            await conn.execute(
                select(Job.id, Job.state, Job.project_uuid, Job.wake_at)
                .where(_waiting_for_poll(states, now), Job.poll_at <= now)
                .order_by(Job.poll_at, Job.id)
                .limit(room)
                .with_for_update(skip_locked=True)
            )
        ).all()
        polls: list[DuePoll] = []
        spent = start
        if due:
            found = {job_id: (state, uuid, deadline) for job_id, state, uuid, deadline in due}
            leased = await conn.execute(
                update(Job)
                .where(
                    Job.id.in_(list(found)),
                    or_(Job.lease_owner.is_(None), Job.lease_expires_at < now),
                )
                .values(
                    lease_owner=owner,
                    lease_expires_at=now + timedelta(seconds=ttl),
                    lease_epoch=Job.lease_epoch + 1,
                )
                .returning(Job.id, Job.lease_epoch)
            )
            epochs = dict(leased.all())
            for job_id, (state, uuid, deadline) in found.items():  # longest overdue first
                if job_id in epochs:
                    lease = Lease(job_id, owner, int(epochs[job_id]))
                    polls.append(DuePoll(lease, state, uuid or "", deadline))
            spent = start + timedelta(seconds=len(polls) / rate)
            await conn.execute(
                update(PollBudget).where(PollBudget.name == BUDGET).values(next_at=spent)
            )
        if len(polls) == room:
            # The budget, not the jobs, was the limit: more may be due once it has room.
            return Grant(polls, _until_full(spent, burst, now))
        earliest: datetime | None = (
            await conn.execute(select(func.min(Job.poll_at)).where(_waiting_for_poll(states, now)))
        ).scalar_one()
    if earliest is None:
        return Grant(polls, None)
    return Grant(polls, max((earliest - now).total_seconds(), 0.0))


def _until_full(start: datetime, burst: float, now: datetime) -> float:
    """Seconds until the bucket, spent up to `start`, holds a whole batch (`burst` seconds)."""
    return max((start + timedelta(seconds=burst) - now).total_seconds(), 0.0)


_NEXT_POLL = (
    update(Job)
    .where(
        Job.id == bindparam("b_id"),
        Job.lease_owner == bindparam("b_owner"),
        Job.lease_epoch == bindparam("b_epoch"),
    )
    .values(lease_owner=None, lease_expires_at=None, poll_at=bindparam("b_poll_at"))
)
_TO_DRIVE = (
    update(Job)
    .where(
        Job.id == bindparam("b_id"),
        Job.lease_owner == bindparam("b_owner"),
        Job.lease_epoch == bindparam("b_epoch"),
    )
    .values(lease_owner=None, lease_expires_at=None, poll_at=None, wake_at=bindparam("b_now"))
)


async def settle_polls(store: Store, polled: Sequence[Polled]) -> list[str]:
    """Write each polled job's next poll, or make it due for a drive; give the leases back.

    One transaction for the batch; a lease lost meanwhile makes its job's write a no-op. Returns
    the jobs now due for a drive (Imagen done, a callback or a cancel arrived during the poll),
    which every listening daemon has been told of.
    """
    if not polled:
        return []
    now = utcnow()

    def params(item: Polled) -> dict[str, object]:
        lease = item.lease
        return {"b_id": lease.job_id, "b_owner": lease.owner, "b_epoch": lease.epoch}

    again = [{**params(p), "b_poll_at": p.next_poll} for p in polled if p.next_poll is not None]
    done = [{**params(p), "b_now": now} for p in polled if p.next_poll is None]
    ids = [p.lease.job_id for p in polled]
    async with write_transaction(store) as conn:
        if again:
            await conn.execute(_NEXT_POLL, again)
        if done:
            await conn.execute(_TO_DRIVE, done)
        # A cancel asked while the poll held the lease waits for a drive to act on it.
        await conn.execute(
            update(Job)
            .where(Job.id.in_(ids), Job.cancel_requested, Job.lease_owner.is_(None))
            .values(poll_at=None, wake_at=now)
        )
        due = list(
            (
                await conn.execute(
                    select(Job.id).where(
                        Job.id.in_(ids), Job.lease_owner.is_(None), Job.wake_at <= now
                    )
                )
            ).scalars()
        )
        if due:
            await notify_wake(conn, due[0])
    return due
