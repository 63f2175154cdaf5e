"""`orchestrator run`: one shoot folder driven to the end in this process, resumable."""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from orchestrator.config import Settings
from orchestrator.progress import ProgressSink
from orchestrator.service.database import open_store
from orchestrator.service.jobs import (
    JobView,
    PhotoFailure,
    current_view,
    failed_photos,
    retry_move,
)
from orchestrator.service.preflight import ready_check, refuse_without_imagen
from orchestrator.service.signals import let_finish
from orchestrator.service.wiring import connected, engine_config, make_engine
from orchestrator.states import JobState
from orchestrator.store.models import Job
from orchestrator.store.queries import Store
from orchestrator.workflow.context import Services
from orchestrator.workflow.engine import Engine, Outcome
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.pipeline import Pipeline
from orchestrator.workflow.planning import RunRequest, plan_jobs
from orchestrator.workflow.shoot import ShootError
from orchestrator.workflow.shoot_sync import look_again

EXIT_FAILED = 1
"""The exit code of a run in which a job failed or stopped before its end."""
EXIT_NOT_EVERY_PHOTO = 3
"""The exit code of a run whose jobs are done but left photos out, refused them or could not
do them (each listed in the summary and `--json`)."""
EXIT_REVIEW = 4
"""The exit code of a run that stops because its jobs wait for a person's review."""


@dataclass
class BatchResult:
    """How a run ended, job by job, with the photos that were not done as asked."""

    outcomes: list[Outcome] = field(default_factory=list)
    failed_photos: dict[str, list[PhotoFailure]] = field(default_factory=dict)
    """By job id: every photo that failed, was refused or was left out, with why."""
    notes: list[str] = field(default_factory=list)
    views: list[JobView] = field(default_factory=list)
    """Each job as the database has it at the end, for `--json`."""

    @property
    def exit_code(self) -> int:
        """0 when every job completed and every photo found was done as asked; 1 when a job
        failed or stopped; 4 when the others completed and some wait for a person's review
        (`EXIT_REVIEW`); 3 when every job completed but photos were refused, left out or
        failed (`EXIT_NOT_EVERY_PHOTO`)."""
        waiting = [o for o in self.outcomes if o.job.state == JobState.REVIEWING]
        clean = all(
            o.job.state == JobState.COMPLETED and o.paused is None
            for o in self.outcomes
            if o not in waiting
        )
        if not clean:
            return EXIT_FAILED
        if waiting:
            return EXIT_REVIEW
        not_done = [
            photo
            for photos in self.failed_photos.values()
            for photo in photos
            if photo.outcome != "not_picked"  # chosen by --min-rating, not a shortfall
        ]
        return EXIT_NOT_EVERY_PHOTO if not_done else 0


@dataclass
class Driving:
    """An open job database, the services and an engine for one command."""

    store: Store
    services: Services
    engine: Engine


@asynccontextmanager
async def driving(
    settings: Settings, progress: ProgressSink, pipeline: Pipeline = PIPELINE
) -> AsyncIterator[Driving]:
    """Everything a command needs to drive jobs, closed afterwards."""
    store = await open_store(settings)
    try:
        async with connected(settings, pipeline=pipeline) as services:
            with let_finish(services.transfers):
                yield Driving(
                    store,
                    services,
                    make_engine(store, services, progress, engine_config(settings), pipeline),
                )
    finally:
        await store.close()


async def run_batch(
    request: RunRequest,
    settings: Settings,
    progress: ProgressSink,
    *,
    pipeline: Pipeline = PIPELINE,
) -> BatchResult:
    """Plan the folder's jobs and drive each to its end, concurrently (through `pipeline`'s
    stages: the product's unless a test brings its own). Nothing is sent unless every setting,
    key, quota and output folder the jobs need is right (`service/preflight.py`)."""
    await refuse_without_imagen(settings, request.spec, pipeline)
    async with driving(settings, progress, pipeline) as ready:
        plan = await plan_jobs(
            ready.store,
            ready.services.imagen,
            request,
            ready=ready_check(settings, ready.services, pipeline),
        )
        for note in plan.notes:
            progress.note(request.source.name, note, level="warn")
        outcomes = await drive_all(ready.engine, plan.jobs, progress)
        notes = list(plan.notes)
        if plan.jobs:
            try:
                late = await look_again(ready.store, request, plan.jobs)
            except ShootError as exc:  # the folder went away meanwhile: nothing more to say
                late = [str(exc)]
            for note in late:
                progress.note(request.source.name, note, level="warn")
            notes += late
        return await _result(ready.store, outcomes, notes)


async def retry_and_drive(ref: str, settings: Settings, progress: ProgressSink) -> BatchResult:
    """Send a failed job back to where it stopped and drive it to its end."""
    async with driving(settings, progress) as ready:
        job = await ready.store.resolve_job(ref)
        job = await ready.store.retry_failed(job.id, retry_move(job))
        progress.note(job.name, f"retrying from {job.state}")
        return await _result(ready.store, await drive_all(ready.engine, [job], progress), [])


async def _result(store: Store, outcomes: list[Outcome], notes: list[str]) -> BatchResult:
    result = BatchResult(outcomes=outcomes, notes=list(notes))
    for outcome in outcomes:
        failed = await failed_photos(store, outcome.job.id)
        result.failed_photos[outcome.job.id] = failed
        result.views.append(
            await current_view(store, outcome.job.id, paused=outcome.paused, failed=failed)
        )
    return result


async def drive_all(engine: Engine, jobs: list[Job], progress: ProgressSink) -> list[Outcome]:
    """Drive every live job at once; finished ones are reported as they are."""

    async def one(job: Job) -> Outcome:
        if job.state in (JobState.COMPLETED, JobState.CANCELLED):
            progress.note(
                job.name,
                f"already {job.state} (job {job.id[:8]}); `orchestrator run "
                f"{shlex.quote(job.source)} --again` edits the folder once more",
            )
            return Outcome(job)
        if job.state == JobState.FAILED:
            progress.note(
                job.name,
                f"failed earlier: {job.last_error}; `orchestrator retry {job.id[:8]}` tries again",
                level="error",
            )
            return Outcome(job)
        return await engine.drive(job.id)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(job)) for job in jobs]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return [task.result() for task in tasks]
