"""Operator views of the job database and the operator's actions: status, history, failed
photos, progress, the stages' timeline, retry and cancel; the same for the CLI, the daemon's
API and the web page."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from orchestrator.errors import OperatorRefusal
from orchestrator.states import TERMINAL_STATES, JobState, Move
from orchestrator.store import tallies
from orchestrator.store.models import Event, Job
from orchestrator.store.queries import (
    JobCursor,
    StateConflict,
    Store,
    live_lease_owner,
)
from orchestrator.store.scheduling import wake_daemons
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.picks import NOT_PICKED, Unpicked
from orchestrator.workflow.upload import ADDED_LATE, LEFT_OUT, REFUSED

Outcome = Literal["failed", "refused", "left_out", "not_picked"]
"""What became of a photo that was not done as asked: a phase failed for it; it was refused
before anything was sent (an empty file, a JPEG named .CR2); it is not part of the job
(gone before its upload, or added to the folder after it); or `--min-rating` kept it back
(chosen, so not counted against the job's result)."""


@dataclass(frozen=True)
class PhotoFailure:
    """A photo that was not done as asked (see `Outcome`), and why."""

    rel_path: str
    phase: str
    reason: str
    outcome: Outcome = "failed"


class PhotoFailureView(BaseModel, frozen=True):
    """A failed, refused or left out photo as every `--json` output shows it."""

    path: str
    phase: str
    reason: str
    outcome: Outcome = "failed"


@dataclass(frozen=True)
class NotDone:
    """How many photos of a job were not done as asked, by what became of them."""

    failed: int = 0
    refused: int = 0
    left_out: int = 0
    not_picked: int = 0

    @classmethod
    def of(cls, photos: Sequence[PhotoFailure]) -> NotDone:
        """The counts of a list of photos."""
        outcomes = [p.outcome for p in photos]
        return cls(
            failed=len({p.rel_path for p in photos if p.outcome == "failed"}),
            refused=outcomes.count("refused"),
            left_out=outcomes.count("left_out"),
            not_picked=outcomes.count("not_picked"),
        )

    def text(self) -> str:
        """ "2 left out, 1 refused" (empty when every photo was done)."""
        parts = [
            f"{self.failed} failed" if self.failed else "",
            f"{self.refused} refused" if self.refused else "",
            f"{self.left_out} left out" if self.left_out else "",
            f"{self.not_picked} not picked" if self.not_picked else "",
        ]
        return ", ".join(p for p in parts if p)


Activity = Literal["running", "waiting", "stopped", "finished"]
"""Whether anything drives a live job: a live lease (running); a daemon or a person has it
next (waiting: queued for the daemons, asleep while Imagen works, or in review); or nothing
(stopped: a `run` whose command ended; the same command continues it)."""


class JobView(BaseModel, frozen=True):
    """A job as every command's `--json`, `/api/jobs` and the web page show it: one shape."""

    id: str
    name: str
    state: str
    source: str
    shoot_id: str | None = None
    """The shoot the job edits photos of (`status --json` lists it inside that shoot)."""
    photos: int
    """Photos in the job now (a count from the database, never a placeholder)."""
    done: dict[str, int]
    """Photos that finished each phase so far, e.g. {"upload": 20, "edit": 0}."""
    last_error: str | None
    image_type: str
    profile_key: int
    profile_name: str | None
    spec: dict[str, Any]
    project_name: str
    project_uuid: str | None
    edited_dir: str
    exported_dir: str
    created_at: datetime
    updated_at: datetime
    lease_owner: str | None
    """Who drives the job right now; None once its lease expired or its process exited."""
    paused: str | None = None
    """Why the command that drove it stopped without an end (only from run, retry, demo)."""
    failed_photos: list[PhotoFailureView] = []
    """Every photo not done as asked, each with why (the job's own view; lists give counts)."""
    failed: int = 0
    """Photos that a phase failed for (and was not done since)."""
    refused: int = 0
    """Files of the shoot refused before anything was sent, each named in `failed_photos`."""
    left_out: int = 0
    """Photos not part of the job: gone before their upload, or added after it."""
    not_picked: int = 0
    """Photos `--min-rating` kept back (listed in `failed_photos`, not a failure)."""
    activity: Activity = "finished"
    state_text: str = ""
    """The state as `status` shows it: "completed, 2 left out", "editing, running (by
    host:pid:tag)", "uploading, stopped"."""


class RefusalView(BaseModel, frozen=True):
    """A hot-folder drop that could not become a job, listed among the jobs by `status` and
    /api/jobs (its `state` is "refused", its `last_error` why)."""

    id: None = None
    name: str
    state: Literal["refused"] = "refused"
    source: str
    last_error: str
    updated_at: datetime


def job_view(
    job: Job,
    photos: int,
    done: dict[str, int] | None = None,
    *,
    paused: str | None = None,
    failed: Sequence[PhotoFailure] = (),
    not_done: NotDone | None = None,
) -> JobView:
    """The typed view of a job, from its row and its counts (`not_done`, else counted from
    `failed`)."""
    counts = not_done or NotDone.of(failed)
    owner = live_lease_owner(job)
    activity = _activity(job, owner)
    return JobView(
        id=job.id,
        name=job.name,
        state=job.state,
        source=job.source,
        shoot_id=job.shoot_id,
        photos=photos,
        done=done or {},
        last_error=job.last_error,
        image_type=job.image_type,
        profile_key=job.profile_key,
        profile_name=job.profile_name,
        spec=job.options,
        project_name=job.project_name,
        project_uuid=job.project_uuid,
        edited_dir=job.edited_dir,
        exported_dir=job.exported_dir,
        created_at=job.created_at,
        updated_at=job.updated_at,
        lease_owner=owner,
        paused=paused,
        failed_photos=[
            PhotoFailureView(path=f.rel_path, phase=f.phase, reason=f.reason, outcome=f.outcome)
            for f in failed
        ],
        failed=counts.failed,
        refused=counts.refused,
        left_out=counts.left_out,
        not_picked=counts.not_picked,
        activity=activity,
        state_text=_state_text(job, activity, owner, counts),
    )


def _activity(job: Job, owner: str | None) -> Activity:
    if job.state in TERMINAL_STATES:
        return "finished"
    if owner is not None:
        return "running"
    if job.queued_for_daemon or job.state == JobState.REVIEWING:
        return "waiting"
    return "stopped"


def _state_text(job: Job, activity: Activity, owner: str | None, counts: NotDone) -> str:
    if activity == "finished":
        return ", ".join(part for part in (str(job.state), counts.text()) if part)
    if activity == "running":
        return f"{job.state}, running (by {owner})"
    if activity == "stopped":
        return f"{job.state}, stopped"
    if job.state == JobState.REVIEWING:
        return f"{job.state}, waiting for review"
    if job.state in PIPELINE.waiting_states:
        return f"{job.state}, waiting for Imagen"
    return f"{job.state}, waiting for a daemon"


def phase_label(phase: str) -> str:
    """What a failed photo's phase is called to the user: the edit phase is its download."""
    return PIPELINE.phase_label(phase)


def progress_text(view: JobView) -> str:
    """Per-phase progress for a table cell, in pipeline order: "40/40 uploaded, 12/40 edited"."""
    order = PIPELINE.phases
    phases = sorted(view.done, key=lambda p: order.index(p) if p in order else len(order))
    return ", ".join(f"{view.done[p]}/{view.photos} {PIPELINE.done_label(p)}" for p in phases)


def job_summary(job: Job, photos: int, not_done: NotDone | None = None) -> dict[str, Any]:
    """A job as `status --json` prints it (the JSON of its `JobView`)."""
    return job_view(job, photos, not_done=not_done).model_dump(mode="json")


async def current_view(
    store: Store,
    job_id: str,
    *,
    paused: str | None = None,
    failed: Sequence[PhotoFailure] | None = None,
) -> JobView:
    """The job as the database has it now, counts and every photo not done as asked
    included (`failed`, when the caller has them already)."""
    [(job, photos)] = await store.list_jobs(job_id=job_id)
    done = (await store.phases_done([job_id]))[job_id]
    if failed is None:
        failed = await failed_photos(store, job_id)
    return job_view(job, photos, done, paused=paused, failed=failed)


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


RECENT_FINISHED = 20
"""Finished jobs `status` shows beside the live ones, newest first (`--all` for every one)."""

API_PAGE = 100
"""Jobs in one page of `/api/jobs` unless `limit` says otherwise."""
API_PAGE_MAX = 1000
"""The most jobs one page of `/api/jobs` holds."""


async def status(
    store: Store,
    *,
    state: str | None = None,
    limit: int | None = None,
    ref: str | None = None,
    everything: bool = False,
) -> list[dict[str, Any]]:
    """Jobs with their counts, newest first: by default every live job and the
    `RECENT_FINISHED` newest finished ones, with the refused hot-folder drops first (see
    RefusalView); or every job (`everything`), those in `state`, or the one `ref` names."""
    if ref:
        found = await store.list_jobs(job_id=(await store.resolve_job(ref)).id)
    elif state or everything:
        found = await store.list_jobs(state=state, limit=limit)
    else:
        live = await store.list_jobs(live=True, limit=limit)
        finished = await store.list_jobs(live=False, limit=RECENT_FINISHED)
        found = sorted(live + finished, key=lambda row: (row[0].created_at, row[0].id))[::-1]
        found = found[:limit]
    views = await _views(store, found)
    if ref or state:
        return views
    return [*await refused_views(store), *views]


async def finished_not_shown(store: Store, views: Sequence[dict[str, Any]]) -> int:
    """How many finished jobs a default `status` left out (older than those it shows)."""
    shown = sum(1 for view in views if view.get("state") in TERMINAL_STATES)
    return max(0, await store.count_jobs(live=False) - shown)


async def refused_views(store: Store) -> list[dict[str, Any]]:
    """The hot-folder drops that could not become jobs, as `status` lists them."""
    return [
        RefusalView(
            name=Path(r.source).name, source=r.source, last_error=r.reason, updated_at=r.refused_at
        ).model_dump(mode="json")
        for r in await store.refusals()
    ]


class BadCursor(OperatorRefusal):
    """A page cursor that this program did not give out."""

    http_status = 400


async def jobs_page(
    store: Store, *, state: str | None = None, limit: int = API_PAGE, cursor: str | None = None
) -> dict[str, Any]:
    """One page of jobs, newest first, for `/api/jobs`: `{"jobs", "next"}`, `next` the cursor
    of the following page or None; the first page also lists the refused drops (`refused`)."""
    limit = max(1, min(limit, API_PAGE_MAX))
    before = read_cursor(cursor) if cursor else None
    found = await store.list_jobs(state=state, limit=limit + 1, before=before)
    page = await _views(store, found[:limit])
    last = found[limit - 1][0] if len(found) > limit else None
    answer: dict[str, Any] = {"jobs": page, "next": cursor_of(last) if last else None}
    if cursor is None:
        answer["refused"] = await refused_views(store)
    return answer


async def _views(store: Store, found: Sequence[tuple[Job, int]]) -> list[dict[str, Any]]:
    ids = [job.id for job, _ in found]
    done = await store.phases_done(ids)
    counts = await not_done_counts(store, ids)
    return [
        job_view(job, n, done[job.id], not_done=counts[job.id]).model_dump(mode="json")
        for job, n in found
    ]


async def not_done_counts(store: Store, job_ids: Sequence[str]) -> dict[str, NotDone]:
    """How many photos of each job were not done as asked (a few grouped reads, no rows of
    photos): for lists of jobs."""
    failing = await tallies.failing_photos(store, job_ids)
    unsent = await unsent_photos(store, job_ids)
    counts = {}
    for job_id in job_ids:
        sent = NotDone.of(unsent[job_id])
        counts[job_id] = NotDone(failing[job_id], sent.refused, sent.left_out, sent.not_picked)
    return counts


def cursor_of(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_cursor(cursor: str) -> JobCursor:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        moment, job_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(moment)
        if created_at.tzinfo is None:
            raise ValueError(moment)
    except ValueError:
        raise BadCursor(
            "that cursor was not given out by this daemon: use the `next` of a page"
        ) from None
    return JobCursor(created_at=created_at, job_id=job_id)


async def history(store: Store, ref: str) -> tuple[Job, list[dict[str, Any]]]:
    """The job named by `ref` and its history, oldest first."""
    job = await store.resolve_job(ref)
    return job, [event_record(e) for e in await store.events(job.id)]


LEFT_OUT_REASON = (
    "left out: it was gone from the folder before its upload; to edit it, put it back "
    "and run the folder again with --again"
)
ADDED_LATE_REASON = (
    "left out: it was added to the folder after the upload, so it is not part of this job; "
    "to edit it, run (or submit) the folder again with --add (a follow-up job of the same shoot)"
)


async def history_view(store: Store, ref: str) -> tuple[JobView, list[dict[str, Any]]]:
    """The job named by `ref` as its typed view, and its history, oldest first."""
    job, events = await history(store, ref)
    return await current_view(store, job.id), events


async def cancel_view(store: Store, ref: str) -> JobView:
    """Cancel the job named by `ref` (see `cancel`); the job as it is afterwards."""
    return await current_view(store, (await cancel(store, ref)).id)


async def retry_view(store: Store, ref: str) -> JobView:
    """Send the job named by `ref` back (see `retry`); the job as it is afterwards."""
    return await current_view(store, (await retry(store, ref)).id)


async def failed_photos(store: Store, job_id: str) -> list[PhotoFailure]:
    """Every photo of the job not done as asked, with why: those that failed a phase for
    good, the files of the shoot refused, and the photos left out (gone before the upload,
    or added after it)."""
    failed = [PhotoFailure(*failure) for failure in await tallies.failures(store, job_id)]
    return failed + (await unsent_photos(store, [job_id]))[job_id]


async def unsent_photos(store: Store, job_ids: Sequence[str]) -> dict[str, list[PhotoFailure]]:
    """The photos of each job's shoot that its history names as refused or left out, less
    those that are photos of the job now (a refused file copied again, a photo put back)."""
    events = await store.events_of_kinds(job_ids, (LEFT_OUT, ADDED_LATE, REFUSED, NOT_PICKED))
    named: dict[str, dict[str, PhotoFailure]] = {job_id: {} for job_id in job_ids}
    for job_id, entries in events.items():
        for event in entries:
            for photo in _unsent_in(event):
                named[job_id][photo.rel_path] = photo  # the latest word on a photo counts
    present = await store.recorded_paths(
        job_ids, [path for photos in named.values() for path in photos]
    )
    return {
        job_id: [p for path, p in photos.items() if (job_id, path) not in present]
        for job_id, photos in named.items()
    }


def _unsent_in(event: Event) -> list[PhotoFailure]:
    data = event.data or {}
    if event.kind == REFUSED:
        return [
            PhotoFailure(str(f.get("path")), "upload", f"refused: {f.get('reason')}", "refused")
            for f in data.get("files", [])
            if isinstance(f, dict)
        ]
    if event.kind == NOT_PICKED:
        least = data.get("min_rating")
        return [
            PhotoFailure(
                str(p.get("path")),
                "upload",
                f"not picked: {Unpicked.described(p.get('rating'), least)}",
                "not_picked",
            )
            for p in data.get("photos", [])
            if isinstance(p, dict)
        ]
    reason = LEFT_OUT_REASON if event.kind == LEFT_OUT else ADDED_LATE_REASON
    return [
        PhotoFailure(str(path), "upload", reason, "left_out") for path in data.get("photos", [])
    ]


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
