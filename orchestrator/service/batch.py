"""`orchestrator run`: one shoot folder driven to the end in this process, resumable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
from sqlalchemy.engine import make_url

from orchestrator.config import Settings
from orchestrator.imagen.client import ImagenClient
from orchestrator.progress import ProgressSink
from orchestrator.store.db import is_sqlite
from orchestrator.store.migrate import ensure_schema, is_up_to_date
from orchestrator.store.models import Job, Photo
from orchestrator.store.queries import Store, process_owner
from orchestrator.store.scheduling import DATABASE_ERRORS
from orchestrator.transfer.limits import parse_rate
from orchestrator.transfer.manager import Transfers, TransferSettings, make_session
from orchestrator.workflow.context import EngineConfig
from orchestrator.workflow.engine import Engine, Outcome
from orchestrator.workflow.planning import RunRequest, plan_jobs
from orchestrator.workflow.states import JobState


class ConfigError(ValueError):
    """The settings cannot work (no API key, bad database URL, bad rate); exit code 2."""


@dataclass
class BatchResult:
    """How a run ended, job by job, with the photos that failed."""

    outcomes: list[Outcome] = field(default_factory=list)
    failed_photos: dict[str, list[Photo]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        """0 when every job completed cleanly, else 1."""
        clean = all(o.job.state == JobState.COMPLETED.value and o.paused is None
                    for o in self.outcomes)
        return 0 if clean and not any(self.failed_photos.values()) else 1


def engine_config(settings: Settings) -> EngineConfig:
    """The engine's pacing from the user's settings."""
    return EngineConfig(
        poll_initial=settings.poll_initial_seconds, poll_max=settings.poll_max_seconds,
        wait_deadline=settings.wait_deadline_hours * 3600, link_batch_size=settings.link_batch_size,
        photo_attempts=settings.photo_attempts, workers=settings.concurrency,
        lease_ttl=settings.lease_ttl_seconds)


def transfer_settings(settings: Settings) -> TransferSettings:
    """The transfers' limits from the user's settings."""
    try:
        rate = parse_rate(settings.bwlimit) if settings.bwlimit else None
    except ValueError as exc:
        raise ConfigError(f"--bwlimit: {exc}") from exc
    return TransferSettings(concurrency=settings.concurrency, bwlimit=rate)


async def open_store(settings: Settings) -> Store:
    """The job database, with its schema created or upgraded when it is a SQLite file."""
    url = settings.resolved_database_url()
    try:
        if is_sqlite(url):
            await ensure_schema(url)
        elif not await is_up_to_date(url):
            raise ConfigError("the database schema is not current: run "
                              "`orchestrator db upgrade` first")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    except DATABASE_ERRORS as exc:
        shown = make_url(url).render_as_string(hide_password=True)
        raise ConfigError(f"cannot use the job database {shown}: {database_problem(exc)}; "
                          "check ORCH_DATABASE_URL and that the database is up") from None
    return Store.open(url)


def database_problem(exc: BaseException) -> str:
    """What a database error says, without SQLAlchemy's statement dump and links."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0]


@asynccontextmanager
async def imagen_session(settings: Settings) -> AsyncIterator[tuple[ImagenClient, Transfers]]:
    """The process's one HTTP session, with the Imagen client and the transfers over it."""
    key = settings.api_key()
    if not key:
        raise ConfigError("no API key: set IMAGEN_API_KEY (or try `orchestrator demo`, which "
                          "needs none)")
    tsettings = transfer_settings(settings)
    session: aiohttp.ClientSession = make_session(tsettings)
    try:
        client = ImagenClient(session, base_url=settings.imagen_api_url, api_key=key)
        yield client, Transfers(session, tsettings)
    finally:
        await session.close()


@dataclass
class Driving:
    """An open job database, Imagen client and engine for one command."""

    store: Store
    client: ImagenClient
    engine: Engine


@asynccontextmanager
async def driving(settings: Settings, progress: ProgressSink) -> AsyncIterator[Driving]:
    """Everything a command needs to drive jobs, closed afterwards."""
    store = await open_store(settings)
    try:
        async with imagen_session(settings) as (client, transfers):
            engine = Engine(store=store, client=client, transfers=transfers, progress=progress,
                            config=engine_config(settings), owner=process_owner())
            yield Driving(store, client, engine)
    finally:
        await store.close()


async def run_batch(request: RunRequest, settings: Settings, progress: ProgressSink) -> BatchResult:
    """Plan the folder's jobs and drive each to its end, concurrently."""
    async with driving(settings, progress) as ready:
        plan = await plan_jobs(ready.store, ready.client, request)
        for note in plan.notes:
            progress.note(request.source.name, note, level="warn")
        outcomes = await drive_all(ready.engine, plan.jobs, progress)
        return await _result(ready.store, outcomes, plan.notes)


async def retry_and_drive(ref: str, settings: Settings, progress: ProgressSink) -> BatchResult:
    """Send a failed job back to where it stopped and drive it to its end."""
    async with driving(settings, progress) as ready:
        job = await ready.store.resolve_job(ref)
        job = await ready.store.retry_failed(job.id)
        progress.note(job.name, f"retrying from {job.state}")
        return await _result(ready.store, await drive_all(ready.engine, [job], progress), [])


async def _result(store: Store, outcomes: list[Outcome], notes: list[str]) -> BatchResult:
    result = BatchResult(outcomes=outcomes, notes=list(notes))
    for outcome in outcomes:
        photos = await store.photos(outcome.job.id)
        result.failed_photos[outcome.job.id] = [p for p in photos if p.failed_reason]
    return result


async def drive_all(engine: Engine, jobs: list[Job], progress: ProgressSink) -> list[Outcome]:
    """Drive every live job at once; finished ones are reported as they are."""
    async def one(job: Job) -> Outcome:
        if job.state in (JobState.COMPLETED.value, JobState.CANCELLED.value):
            progress.note(job.name, f"already {job.state}")
            return Outcome(job)
        if job.state == JobState.FAILED.value:
            progress.note(job.name, f"failed earlier: {job.last_error}; `orchestrator retry "
                          f"{job.id[:8]}` tries again", level="error")
            return Outcome(job)
        return await engine.drive(job.id)

    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(job)) for job in jobs]
    except BaseExceptionGroup as group_error:
        raise group_error.exceptions[0] from None
    return [task.result() for task in tasks]
