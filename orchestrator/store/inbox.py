"""The callbacks inbox: what Imagen told us, kept once per (project, action, status).

A callback never moves a job's state: it only makes the job due now, and the engine then asks
Imagen for the status. So duplicates are dropped, and late or reordered ones cost one poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from functools import cache

from sqlalchemy import Insert, bindparam, insert, select, update

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


# Built once: a callback is a handful of statements, and building them is most of its cost.
_FIND_JOB = select(Job.id, Job.project_uuid).where(
    Job.callback_secret_hash == bindparam("secret_hash")
)


@cache
def _keep_once(dialect: str) -> Insert:
    statement: Insert = (
        upsert_into(dialect, Callback)
        .values(
            project_uuid=bindparam("project_uuid"),
            action=bindparam("action"),
            status=bindparam("status"),
            job_id=bindparam("job_id"),
            received_at=bindparam("now"),
        )
        .on_conflict_do_nothing(index_elements=["project_uuid", "action", "status"])
    )
    return statement.returning(Callback.id)


# wake_at is a scheduling hint, not job state: no lease needed, and a driver that holds the
# lease right now overwrites it (the scheduler re-checks the inbox when that drive ends).
_WAKE_JOB = (
    update(Job).where(Job.id == bindparam("job_id"), is_live()).values(wake_at=bindparam("now"))
)
_NOTE_IN_HISTORY = insert(Event).values(
    job_id=bindparam("job_id"),
    at=bindparam("now"),
    kind="callback",
    message=bindparam("message"),
    data=bindparam("data"),
)


async def deliver_callback(
    store: Store, secret_hash: str, *, project_uuid: str, action: str, status: str
) -> Delivery:
    """Find the secret's job, check the project, store the callback once, wake the job.

    One transaction: the inbox row, the job's `wake_at` and its history line commit together,
    and on Postgres the NOTIFY goes out to every daemon with that commit.
    """
    async with store.engine.begin() as conn:
        job = (await conn.execute(_FIND_JOB, {"secret_hash": secret_hash})).first()
        if job is None:
            return Delivery(Verdict.UNKNOWN_SECRET)
        if job.project_uuid != project_uuid:
            return Delivery(Verdict.WRONG_PROJECT, job.id)
        values = {
            "job_id": job.id,
            "now": utcnow(),
            "project_uuid": project_uuid,
            "action": action,
            "status": status,
        }
        if (await conn.execute(_keep_once(conn.dialect.name), values)).first() is None:
            return Delivery(Verdict.DUPLICATE, job.id)
        await conn.execute(_WAKE_JOB, values)
        await conn.execute(
            _NOTE_IN_HISTORY,
            {
                **values,
                "message": f"Imagen: {action} {status}",
                "data": {"action": action, "status": status},
            },
        )
        await notify_wake(conn, job.id)
    return Delivery(Verdict.ACCEPTED, job.id)
