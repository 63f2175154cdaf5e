"""Operator views of the job database and the operator's actions: status, history, failed
photos, retry and cancel; the same for the CLI, the daemon's API and the web page."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.states import JobState, Move
from orchestrator.store.models import Event, Job
from orchestrator.store.queries import StateConflict, Store
from orchestrator.store.scheduling import wake_daemons
from orchestrator.workflow.pipeline import PIPELINE
from orchestrator.workflow.upload import LEFT_OUT


@dataclass(frozen=True)
class PhotoFailure:
    """A photo that failed a phase for good, and why."""

    rel_path: str
    phase: str
    reason: str


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
        "profile_name": job.profile_name,
        "spec": job.options,
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


LEFT_OUT_REASON = (
    "left out: it was gone from the folder before its upload; to edit it, put it back "
    "and run the folder again with --again"
)


async def failed_photos(store: Store, job_id: str) -> list[PhotoFailure]:
    """Every photo of the job that failed a phase for good, with why, and every photo left
    out because it was gone before its upload."""
    failed = [
        PhotoFailure(photo.rel_path, phase, reason)
        for photo in await store.photos(job_id)
        for phase, reason in photo.failures
    ]
    left_out = [
        PhotoFailure(str(rel_path), "upload", LEFT_OUT_REASON)
        for event in await store.events(job_id)
        if event.kind == LEFT_OUT and event.data
        for rel_path in event.data.get("photos", [])
    ]
    return failed + left_out


def retry_move(job: Job) -> Move:
    """The move that brings a failed job back to where it stopped."""
    if job.state != JobState.FAILED:
        raise StateConflict(f"job {job.id[:8]} is {job.state}, not failed: nothing to retry")
    return PIPELINE.transitions.move(job.state, job.state_before_failure or JobState.QUEUED)


async def retry(store: Store, ref: str) -> Job:
    """Put a failed job back where it stopped, with only its failed photos to redo."""
    job = await store.resolve_job(ref)
    job = await store.retry_failed(job.id, retry_move(job))
    if job.queued_for_daemon:
        await wake_daemons(store, job.id)
    return job


async def cancel(store: Store, ref: str) -> Job:
    """Stop a job for good; a job that already ended cannot be cancelled."""
    job = await store.resolve_job(ref)
    if job.state in (JobState.COMPLETED, JobState.CANCELLED):
        raise StateConflict(f"job {job.id[:8]} is already {job.state}: there is nothing to cancel")
    return await store.request_cancel(
        job.id, PIPELINE.transitions.move(job.state, JobState.CANCELLED)
    )
