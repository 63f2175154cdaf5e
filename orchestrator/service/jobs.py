"""Operator views of the job database: status, history, retry and cancel."""

from __future__ import annotations

from typing import Any

from orchestrator.store.models import Event, Job
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import wake_daemons


def job_summary(job: Job, photos: int) -> dict[str, Any]:
    """A job as `status --json` prints it."""
    return {
        "id": job.id,
        "name": job.name,
        "state": job.state,
        "source": job.source,
        "photos": photos,
        "last_error": job.last_error,
        "image_type": job.image_type,
        "profile_key": job.profile_key,
        "project_uuid": job.project_uuid,
        "edited_dir": job.edited_dir,
        "exported_dir": job.exported_dir,
        "created_at": job.created_at.isoformat(),
        "updated_at": job.updated_at.isoformat(),
        "lease_owner": job.lease_owner,
    }


def event_record(event: Event) -> dict[str, Any]:
    """A history entry as `history --json` prints it."""
    return {
        "at": event.at.isoformat(),
        "kind": event.kind,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "message": event.message,
        "data": event.data,
    }


async def status(store: Store) -> list[dict[str, Any]]:
    """Every job with its photo count, newest first."""
    return [job_summary(job, n) for job, n in await store.list_jobs()]


async def history(store: Store, ref: str) -> tuple[Job, list[dict[str, Any]]]:
    """The job named by `ref` and its history, oldest first."""
    job = await store.resolve_job(ref)
    return job, [event_record(e) for e in await store.events(job.id)]


async def retry(store: Store, ref: str) -> Job:
    """Put a failed job back where it stopped, with only its failed photos to redo."""
    job = await store.resolve_job(ref)
    job = await store.retry_failed(job.id)
    if job.queued_for_daemon:
        await wake_daemons(store, job.id)
    return job


async def cancel(store: Store, ref: str) -> Job:
    """Stop a job for good."""
    job = await store.resolve_job(ref)
    return await store.request_cancel(job.id)
