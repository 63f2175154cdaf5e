"""The callbacks inbox: what Imagen told us, kept once per (project, action, status).

A callback never moves a job's state: it only makes the job due now, and the engine then asks
Imagen for the status. So duplicates are dropped, and late or reordered ones cost one poll.

Callbacks come in bursts (a busy Saturday: hundreds of edits end at once), so they are kept in
groups: `deliver_callbacks` stores any number of them in one transaction of four statements
(on Postgres in one statement, one round trip), and the receiver hands it whatever arrived
while its writers were busy.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from enum import Enum

from sqlalchemy import bindparam, insert, select, text, update
from sqlalchemy.ext.asyncio import create_async_engine

from orchestrator.states import TERMINAL_STATES
from orchestrator.store.db import upsert_into
from orchestrator.store.models import Callback, Event, Job, UTCDateTime, utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import WAKE_CHANNEL, is_live, notify_wake


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
"""The inbox's own connections on Postgres: as many groups written at once."""


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


def inbox_writers(store: Store) -> int:
    """How many groups of callbacks may be written at once: one per inbox connection on
    Postgres, one on SQLite (which takes one writer at a time anyway)."""
    return INBOX_CONNECTIONS if store.engine.dialect.name == "postgresql" else 1


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
    every daemon with that commit. On Postgres all of it is one statement
    (`DELIVER_IN_ONE_STATEMENT`): a single round trip, where each round trip waits for a turn
    of a daemon's busy event loop.
    """
    if not arrivals:
        return []
    if store.engine.dialect.name == "postgresql":
        return await _deliver_in_one_statement(store, arrivals)
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
            job_id, job_project = jobs.get(arrival.secret_hash, (None, None))
            refused = _refused(arrival, job_id, job_project, candidates)
            if refused is None and job_id is not None:
                candidates[arrival.news] = (index, job_id)
            deliveries.append(refused)
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


DELIVER_IN_ONE_STATEMENT = text(
    """
    WITH arrival AS (
        SELECT * FROM unnest(
            CAST(:secret_hashes AS text[]), CAST(:projects AS text[]),
            CAST(:actions AS text[]), CAST(:statuses AS text[])
        ) WITH ORDINALITY AS a(secret_hash, project_uuid, action, status, ord)
    ),
    found AS (
        SELECT a.ord, a.project_uuid, a.action, a.status,
               j.id AS job_id, j.project_uuid AS job_project
        FROM arrival AS a LEFT JOIN jobs AS j ON j.callback_secret_hash = a.secret_hash
    ),
    news AS (
        SELECT DISTINCT ON (project_uuid, action, status) project_uuid, action, status, job_id
        FROM found WHERE job_project = project_uuid
        ORDER BY project_uuid, action, status, ord
    ),
    kept AS (
        INSERT INTO callbacks (project_uuid, action, status, job_id, received_at)
        SELECT project_uuid, action, status, job_id, :now FROM news
        ON CONFLICT (project_uuid, action, status) DO NOTHING
        RETURNING project_uuid, action, status, job_id
    ),
    woken AS (
        UPDATE jobs SET wake_at = :now
        WHERE id IN (SELECT job_id FROM kept) AND state <> ALL(CAST(:terminal AS text[]))
    ),
    told AS (
        INSERT INTO events (job_id, at, kind, message, data)
        SELECT job_id, :now, 'callback', 'Imagen: ' || action || ' ' || status,
               json_build_object('action', action, 'status', status)
        FROM kept
    )
    SELECT f.ord, f.job_id, f.job_project, k.job_id IS NOT NULL AS kept,
           (SELECT count(pg_notify(:channel, first.job_id))
            FROM (SELECT min(job_id) AS job_id FROM kept HAVING count(*) > 0) AS first)
           AS notified
    FROM found AS f
    LEFT JOIN kept AS k
      ON (k.project_uuid, k.action, k.status) = (f.project_uuid, f.action, f.status)
    ORDER BY f.ord
    """
).bindparams(
    bindparam("now", type_=UTCDateTime()),
    bindparam("terminal", value=sorted(map(str, TERMINAL_STATES))),
    bindparam("channel", value=WAKE_CHANNEL),
)
"""`deliver_callbacks` on Postgres: one statement, one round trip, whatever the group's size.

The statement's text never changes (the arrivals go as four arrays), so each connection
prepares it once. Postgres runs every data-modifying CTE to completion whether it is read or
not, and the final SELECT sees the tables as they were before (it reads `kept`, not them)."""


async def _deliver_in_one_statement(store: Store, arrivals: Sequence[Arrival]) -> list[Delivery]:
    """`deliver_callbacks` on Postgres in one statement: the same verdicts, rows and NOTIFY."""
    async with store.engine.connect() as conn:
        autocommit = await conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = await autocommit.execute(
            DELIVER_IN_ONE_STATEMENT,
            {
                "secret_hashes": [a.secret_hash for a in arrivals],
                "projects": [a.project_uuid for a in arrivals],
                "actions": [a.action for a in arrivals],
                "statuses": [a.status for a in arrivals],
                "now": utcnow(),
            },
        )
        found = rows.all()
    deliveries = []
    seen: set[tuple[str, str, str]] = set()
    for arrival, (_, job_id, job_project, kept, _) in zip(arrivals, found, strict=True):
        refused = _refused(arrival, job_id, job_project, seen)
        if refused is None:
            seen.add(arrival.news)
            refused = Delivery(Verdict.ACCEPTED if kept else Verdict.DUPLICATE, job_id)
        deliveries.append(refused)
    return deliveries


def _refused(
    arrival: Arrival,
    job_id: str | None,
    job_project: str | None,
    seen: Container[tuple[str, str, str]],
) -> Delivery | None:
    """The arrival's verdict when it is not news to keep: no job has its secret, the project
    is not the job's, or equal news came earlier in the group (the first wins); else None."""
    if job_id is None:
        return Delivery(Verdict.UNKNOWN_SECRET)
    if job_project != arrival.project_uuid:
        return Delivery(Verdict.WRONG_PROJECT, job_id)
    if arrival.news in seen:
        return Delivery(Verdict.DUPLICATE, job_id)
    return None
