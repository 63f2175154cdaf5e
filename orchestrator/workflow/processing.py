"""Stages: ask Imagen to edit or export (exactly once), then wait for it to finish."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.errors import Refused
from orchestrator.imagen.errors import ImagenNotFound
from orchestrator.imagen.models import KNOWN_STATUSES, TaskStatus
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.workflow.context import EngineConfig, JobContext, JobFailed, JobWaiting
from orchestrator.workflow.intent import call_once, crash_points
from orchestrator.workflow.outputs import wants_export
from orchestrator.workflow.stage import Stage

if TYPE_CHECKING:
    from orchestrator.imagen.client import ImagenClient

UNKNOWN_STATUSES_NOTED = 3
"""Unknown status words written to the history per wait; more are only polled through."""


@dataclass(frozen=True)
class Process:
    """One of Imagen's two long-running jobs on a project, and the states around it."""

    action: str
    requested: str
    """The intent: entered before the request is sent."""
    running: str
    """Imagen accepted the request and works; the job waits."""
    status: Callable[[ImagenClient, str], Awaitable[TaskStatus]]
    start: Callable[[JobContext], Awaitable[None]]


async def request(ctx: JobContext, process: Process) -> None:
    """Send the request unless Imagen already has it, then mark it running.

    The job is in the `requested` state (the intent) when the request is sent, so after a
    crash the status is asked first and the request is never sent twice.
    """
    imagen, uuid = ctx.services.imagen, ctx.project_uuid

    async def accepted() -> TaskStatus | None:
        try:
            status = await process.status(imagen, uuid)
        except ImagenNotFound:
            return None
        # A failed earlier run of the task does not count: `retry` asks for a new one.
        return None if status.is_failed else status

    try:
        await call_once(
            ctx,
            action=f"{process.action}_request",
            what=f"the {process.action} request",
            arrived=accepted,
            call=lambda: process.start(ctx),
            found=f"{process.action} was already accepted by Imagen",
        )
    except Refused as exc:
        raise JobFailed(
            f"Imagen refused the {process.action} request: {exc}", back_to=process.requested
        ) from exc
    await ctx.advance(process.running, f"{process.action} accepted by Imagen")


async def wait(ctx: JobContext, process: Process) -> None:
    """Poll the status with growing pauses until Imagen finishes, fails, or the deadline."""
    imagen, uuid = ctx.services.imagen, ctx.project_uuid
    # Counted from when the job entered this state: a resumed run or a daemon's wake-up
    # keeps the deadline and the backoff of the first poll.
    since = (
        await ctx.store.entered_state_at(ctx.job.id, process.running) or ctx.job.updated_at
    ).timestamp()
    deadline = time.monotonic() + ctx.config.wait_deadline - max(0.0, time.time() - since)
    delay = ctx.config.poll_initial
    last_seen = ""
    unknown_noted = 0
    stage = process.action
    ctx.progress.stage_started(ctx.label, stage, files=0, total_bytes=None)
    while True:
        try:
            status = await process.status(imagen, uuid)
        except ImagenNotFound:
            status = TaskStatus(status="Unknown", details="Imagen does not know this task yet")
        ctx.progress.waiting(ctx.label, stage, status.progress, status.status)
        if status.status.lower() != last_seen:
            last_seen = status.status.lower()
            known = last_seen in KNOWN_STATUSES or last_seen == "unknown"  # not found yet
            if not known and unknown_noted < UNKNOWN_STATUSES_NOTED:
                unknown_noted += 1
                await ctx.event("note", f"unknown {stage} status {status.status!r}; waiting")
        if status.is_completed:
            ctx.progress.stage_finished(ctx.label, stage)
            await ctx.finish_stage(f"{stage} completed")
            return
        if status.is_failed:
            detail = f": {status.details}" if status.details else ""
            raise JobFailed(
                f"Imagen reported the {stage} failed{detail}", back_to=process.requested
            )
        if time.monotonic() > deadline:
            hours = ctx.config.wait_deadline / 3600
            raise JobFailed(
                f"the {stage} did not finish within {hours:g} h", back_to=process.running
            )
        if not ctx.config.wait_inline:
            # The daemon's poller asks again, within its budget; a callback or the deadline
            # brings the job back to a drive.
            raise JobWaiting(
                poll_interval(ctx.config, time.time() - since),
                deadline=datetime.fromtimestamp(since + ctx.config.wait_deadline, UTC),
            )
        await ctx.nap(delay)
        delay = min(delay * ctx.config.poll_growth, ctx.config.poll_max)


def poll_interval(config: EngineConfig, waited: float) -> float:
    """Seconds to the next status poll of a job that has waited `waited` seconds: backed off
    with the time already waited, so a long edit is polled rarely."""
    return min(config.poll_max, max(config.poll_initial, waited / 4))


async def poll_status(imagen: ImagenClient, state: str, project_uuid: str) -> TaskStatus:
    """One status request for a job waiting in `state` (editing or exporting): the poller's.

    Imagen has no status of many projects at once, so each waiting job costs a request of
    its own; the daemons' shared poll budget bounds how many are sent.
    """
    try:
        return await POLLED[state].status(imagen, project_uuid)
    except ImagenNotFound:
        return TaskStatus(status="Unknown", details="Imagen does not know this task yet")


def process_stage(
    process: Process, *, states: tuple[str, ...], applies: Callable[[JobSpec], bool] | None = None
) -> Stage:
    """The stage that requests `process` and waits for it."""

    async def step(ctx: JobContext) -> None:
        if ctx.state not in (process.requested, process.running):
            await ctx.advance(process.requested)  # the intent, before anything is sent
        if ctx.state == process.requested:
            await request(ctx, process)
        await wait(ctx, process)

    return Stage(
        name=process.action,
        states=states,
        step=step,
        applies=applies,
        waiting=frozenset({process.running}),
        crash_points=crash_points(f"{process.action}_request"),
    )


async def _start_edit(ctx: JobContext) -> None:
    """Send the edit request, with a fresh callback URL whose secret is stored only as a hash."""
    options = ctx.edit_options()
    if ctx.config.callback_base is not None:
        secret = secrets.token_urlsafe(32)
        await ctx.store.set_callback_secret(ctx.lease, ctx.state, callback_secret_hash(secret))
        url = f"{ctx.config.callback_base.rstrip('/')}/callbacks/{secret}"
        options = options.model_copy(update={"callback_url": url})
    await ctx.services.imagen.start_edit(ctx.project_uuid, options)


async def _start_export(ctx: JobContext) -> None:
    await ctx.services.imagen.start_export(ctx.project_uuid)


def callback_secret_hash(secret: str) -> str:
    """How a callback secret is stored and looked up: its SHA-256, never the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


EDIT = Process(
    "edit",
    JobState.EDIT_REQUESTED,
    JobState.EDITING,
    lambda imagen, uuid: imagen.edit_status(uuid),
    _start_edit,
)
EXPORT = Process(
    "export",
    JobState.EXPORT_REQUESTED,
    JobState.EXPORTING,
    lambda imagen, uuid: imagen.export_status(uuid),
    _start_export,
)

EDIT_STAGE = process_stage(
    EDIT, states=(JobState.UPLOADED, JobState.EDIT_REQUESTED, JobState.EDITING)
)
EXPORT_STAGE = process_stage(
    EXPORT, states=(JobState.EXPORT_REQUESTED, JobState.EXPORTING), applies=wants_export
)
POLLED = {process.running: process for process in (EDIT, EXPORT)}
"""The states in which a daemon job waits for Imagen, and what its poll asks."""
