"""Operator views of shoots: what `status`, `history` and their `--json` show first, each shoot
with its jobs (one per Imagen project) inside, in the jobs' own view (`service/jobs.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel

from orchestrator.service import review
from orchestrator.service.jobs import (
    RECENT_FINISHED,
    JobView,
    NotDone,
    current_view,
    event_record,
    job_view,
    not_done_counts,
    refused_views,
)
from orchestrator.service.review import Approval
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store import shoots
from orchestrator.store.models import Shoot
from orchestrator.store.queries import JobNotFound, Store
from orchestrator.store.shoots import ShootJobs

_ORDER = list(JobState)


class ShootView(BaseModel, frozen=True):
    """A shoot as `status --json` lists it: its own fields, then its jobs' views."""

    id: str
    name: str
    source: str
    state: str
    """The least advanced state of its live jobs; once none is live: failed if one failed,
    completed if one completed, else cancelled."""
    state_text: str
    photos: int
    """Photos in all its jobs."""
    keywords: list[str]
    """The shoot's own words, for every photo of it."""
    failed: int
    refused: int
    left_out: int
    not_picked: int
    last_error: str | None
    """The first of its jobs' last errors (each job keeps its own)."""
    created_at: datetime
    updated_at: datetime
    """When any of its jobs last changed."""
    jobs: list[JobView]


def shoot_view(shoot: Shoot, jobs: Sequence[JobView]) -> ShootView:
    """The typed view of a shoot from its row and its jobs' views (oldest job first)."""
    live = [job for job in jobs if job.state not in TERMINAL_STATES]
    counts = NotDone(
        sum(job.failed for job in jobs),
        sum(job.refused for job in jobs),
        sum(job.left_out for job in jobs),
        sum(job.not_picked for job in jobs),
    )
    if live:
        leading = min(live, key=_progress)
        state, text = leading.state, leading.state_text
    else:
        ended = {job.state for job in jobs}
        state = next(
            (s for s in (JobState.FAILED, JobState.COMPLETED) if s in ended), JobState.CANCELLED
        )
        text = ", ".join(part for part in (str(state), counts.text()) if part)
    return ShootView(
        id=shoot.id,
        name=shoot.name,
        source=shoot.source,
        state=state,
        state_text=text,
        photos=sum(job.photos for job in jobs),
        keywords=list(shoot.keywords),
        failed=counts.failed,
        refused=counts.refused,
        left_out=counts.left_out,
        not_picked=counts.not_picked,
        last_error=next((job.last_error for job in jobs if job.last_error), None),
        created_at=shoot.created_at,
        updated_at=max((job.updated_at for job in jobs), default=shoot.created_at),
        jobs=list(jobs),
    )


def _progress(job: JobView) -> int:
    return _ORDER.index(JobState(job.state)) if job.state in _ORDER else len(_ORDER)


async def status(
    store: Store,
    *,
    state: str | None = None,
    limit: int | None = None,
    ref: str | None = None,
    everything: bool = False,
) -> list[dict[str, Any]]:
    """Shoots with their jobs, newest first: by default every live shoot and the
    `RECENT_FINISHED` newest finished ones, after the refused hot-folder drops; or every shoot
    (`everything`), those with a job in `state`, or the one `ref` names (a shoot or a job)."""
    if ref:
        shoot = await shoots.resolve_shoot(store, ref)
        found = await shoots.list_shoots(store, shoot_ids=[shoot.id])
    elif state or everything:
        found = await shoots.list_shoots(store, state=state, limit=limit)
    else:
        live = await shoots.list_shoots(store, live=True, limit=limit)
        finished = await shoots.list_shoots(store, live=False, limit=RECENT_FINISHED)
        found = sorted(live + finished, key=lambda s: (s.shoot.created_at, s.shoot.id))[::-1]
        found = found[:limit]
    views = [view.model_dump(mode="json") for view in await shoot_views(store, found)]
    if ref or state:
        return views
    return [*[{**r, "photos": 0, "jobs": []} for r in await refused_views(store)], *views]


async def shoot_views(store: Store, found: Sequence[ShootJobs]) -> list[ShootView]:
    """The views of shoots and their jobs, from grouped counts (no photo rows)."""
    ids = [job.id for shoot in found for job, _ in shoot.jobs]
    done = await store.phases_done(ids)
    counts = await not_done_counts(store, ids)
    return [
        shoot_view(
            shoot.shoot,
            [job_view(job, n, done[job.id], not_done=counts[job.id]) for job, n in shoot.jobs],
        )
        for shoot in found
    ]


async def finished_not_shown(store: Store, views: Sequence[dict[str, Any]]) -> int:
    """How many finished shoots a default `status` left out (older than those it shows)."""
    shown = sum(1 for view in views if view.get("id") and view["state"] in TERMINAL_STATES)
    return max(0, await shoots.count_shoots(store, live=False) - shown)


async def approve_shoot(store: Store, ref: str) -> list[Approval]:
    """One review for the shoot `ref` names: approve every job of it waiting for review (its
    RAW and JPEG jobs and its follow-ups), as `approve JOB` approves one; a reference to one
    job of several approves that job alone."""
    _shoot, jobs = await shoots.jobs_named(store, ref)
    waiting = [job for job in jobs if job.state == JobState.REVIEWING] or jobs[:1]
    return [await review.approve(store, job.id) for job in waiting]


@dataclass(frozen=True)
class ShootHistory:
    """A shoot, the job a reference named in it (if it named one), and every job's history."""

    shoot: ShootView
    job: JobView | None
    """The job the reference named, or the shoot's only job; None for a shoot of several."""
    events: list[dict[str, Any]]
    """Oldest first, each naming its job (`job`, `job_name`)."""


async def history_view(store: Store, ref: str) -> ShootHistory:
    """The shoot `ref` names (a shoot, or one of its jobs) with its jobs' full views and the
    history of every job of it."""
    shoot = await shoots.resolve_shoot(store, ref)
    jobs = (await shoots.jobs_of_shoots(store, [shoot.id])).get(shoot.id, [])
    views = [await current_view(store, job.id) for job, _ in jobs]
    events = [
        {**event_record(event), "job": job.id, "job_name": job.name}
        for job, _ in jobs
        for event in await store.events(job.id)
    ]
    events.sort(key=lambda entry: str(entry["at"]))
    named = views[0] if len(views) == 1 else None
    if named is None and not shoot.id.startswith(ref.strip().lower()):
        try:
            job_id = (await store.resolve_job(ref)).id
        except JobNotFound:
            job_id = None
        named = next((view for view in views if view.id == job_id), None)
    return ShootHistory(shoot_view(shoot, views), named, events)
