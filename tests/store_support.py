"""Jobs made straight in the store, for tests of its own statements (claims, leases, lists,
pruning, polls): a job with its photos as the planner would record it, handed to the daemons
when asked, then any of its columns set as the test needs them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import update

from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, NewPhoto, Store
from orchestrator.store.scheduling import queue_for_daemon


async def stored_job(
    store: Store, *, name: str = "shoot", photos: int = 1, daemon: bool = False, **values: Any
) -> str:
    """A new job of `photos` JPEGs named `name`; queued for the daemons if `daemon`; with
    `values` written into its row. Its id."""
    job_id = uuid.uuid4().hex
    await store.create_job(
        NewJob(
            id=job_id,
            name=name,
            source=f"/shoots/{job_id}",
            edited_dir="/e",
            exported_dir="/x",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec={"version": 1},
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(f"{n}.jpg", f"{n}.jpg", 1, 1) for n in range(photos)],
    )
    if daemon:
        await queue_for_daemon(store, [job_id])
    if values:
        async with store.engine.begin() as conn:
            await conn.execute(update(Job).where(Job.id == job_id).values(**values))
    return job_id
