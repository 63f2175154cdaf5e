"""The callbacks inbox: what Imagen told us, kept once per (project, action, status).

A callback never moves a job's state: it only makes the job due now, and the engine then asks
Imagen for the status. So duplicates are dropped, and late or reordered ones cost one poll.

Callbacks come in bursts (a busy Saturday: hundreds of edits end at once), so they are kept in
groups: `deliver_callbacks` stores any number of them in one transaction of four statements,
and the receiver hands it whatever arrived while the previous group was being written.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import insert, select, update
from sqlalchemy.ext.asyncio import create_async_engine

from orchestrator.store.db import upsert_into
from orchestrator.store.models import Callback, Event, Job, utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import is_live, notify_wake


class Verdict(Enum):
    """What became of a callback."""

    ACCEPTED = "accepted"
    """New news: stored, and its job made due now."""
    DUPLICATE = "duplicate"
    """The inbox already had it; nothing changed."""
    UNKNOWN_SECRET = "unknown_secret"
    """No job has this secret."""
    WRONG_PROJECT = "wrong_project"
    """The secret's job belongs to another project."""


@dataclass(frozen=True)
class Delivery:
    """The verdict on one callback, and the job it concerned when there was one."""

    verdict: Verdict
    job_id: str | None = None


@dataclass(frozen=True)
class Arrival:
    """One well-formed callback as it arrived: the hash of its URL's secret and its body."""

    secret_hash: str
    project_uuid: str
    action: str
    status: str

    @property
    def news(self) -> tuple[str, str, str]:
        """What the inbox keeps once."""
        return (self.project_uuid, self.action, self.status)


INBOX_CONNECTIONS = 2
"""The inbox's own connections on Postgres: a group being written and the next one's start."""


def inbox_store(store: Store) -> Store:
    """A store for the inbox alone: on Postgres over a small pool of its own, so a callback
    never waits for a connection behind the drives, polls and pages; on SQLite (no pool, one
    writer at a time anyway) `store` itself. Close it apart when it is not `store`."""
    if store.engine.dialect.name != "postgresql":
        return store
    return Store(
        create_async_engine(
            store.engine.url, pool_size=INBOX_CONNECTIONS, max_overflow=0, pool_pre_ping=True
        )
    )


async def deliver_callback(
    store: Store, secret_hash: str, *, project_uuid: str, action: str, status: str
) -> Delivery:
    """Find the secret's job, check the project, store the callback once, wake the job."""
    [delivery] = await deliver_callbacks(
        store, [Arrival(secret_hash, project_uuid, action, status)]
    )
    return delivery


async def deliver_callbacks(store: Store, arrivals: Sequence[Arrival]) -> list[Delivery]:
    """Each arrival's verdict, in order; the accepted ones stored and their jobs woken.

    One transaction however many there are: the jobs found by their secrets, the inbox rows
    kept once (the first of equal ones in the group wins, the others are duplicates), the jobs'
    `wake_at` and their history lines commit together, and on Postgres one NOTIFY goes out to
    every daemon with that commit.
    """
    if not arrivals:
        return []
    async with store.engine.begin() as conn:
        found = await conn.execute(
            select(Job.callback_secret_hash, Job.id, Job.project_uuid).where(
                Job.callback_secret_hash.in_(sorted({a.secret_hash for a in arrivals}))
            )
        )
        jobs = {secret: (job_id, project) for secret, job_id, project in found}
        deliveries: list[Delivery | None] = []
        candidates: dict[tuple[str, str, str], tuple[int, str]] = {}
        for index, arrival in enumerate(arrivals):
            job = jobs.get(arrival.secret_hash)
            if job is None:
                deliveries.append(Delivery(Verdict.UNKNOWN_SECRET))
            elif job[1] != arrival.project_uuid:
                deliveries.append(Delivery(Verdict.WRONG_PROJECT, job[0]))
            elif arrival.news in candidates:
                deliveries.append(Delivery(Verdict.DUPLICATE, job[0]))
            else:
                candidates[arrival.news] = (index, job[0])
                deliveries.append(None)
        now = utcnow()
        kept: set[tuple[str, str, str]] = set()
        if candidates:
            rows = [
                {
                    "project_uuid": project,
                    "action": action,
                    "status": status,
                    "job_id": job_id,
                    "received_at": now,
                }
                for (project, action, status), (_, job_id) in candidates.items()
            ]
            inserted = await conn.execute(
                upsert_into(conn.dialect.name, Callback)
                .values(rows)
                .on_conflict_do_nothing(index_elements=["project_uuid", "action", "status"])
                .returning(Callback.project_uuid, Callback.action, Callback.status)
            )
            kept = {(project, action, status) for project, action, status in inserted}
        for news, (index, job_id) in candidates.items():
            verdict = Verdict.ACCEPTED if news in kept else Verdict.DUPLICATE
            deliveries[index] = Delivery(verdict, job_id)
        accepted = [(news, job_id) for news, (_, job_id) in candidates.items() if news in kept]
        woken = sorted({job_id for _, job_id in accepted})
        if woken:
            # wake_at is a scheduling hint, not job state: no lease needed, and a driver that
            # holds the lease right now overwrites it (the scheduler re-checks the inbox when
            # that drive ends).
            await conn.execute(update(Job).where(Job.id.in_(woken), is_live()).values(wake_at=now))
            await conn.execute(
                insert(Event).values(
                    [
                        {
                            "job_id": job_id,
                            "at": now,
                            "kind": "callback",
                            "message": f"Imagen: {action} {status}",
                            "data": {"action": action, "status": status},
                        }
                        for (_, action, status), job_id in accepted
                    ]
                )
            )
            await notify_wake(conn, woken[0])
    return [delivery for delivery in deliveries if delivery is not None]  # all set by now
