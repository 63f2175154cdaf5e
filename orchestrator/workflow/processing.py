"""Stages: ask Imagen to edit or export (exactly once), then wait for it to finish."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orchestrator.crashpoints import crash_point
from orchestrator.imagen.errors import (
    ImagenAmbiguous,
    ImagenBadRequest,
    ImagenNotFound,
    ImagenUnavailable,
)
from orchestrator.imagen.models import EditOptions, TaskStatus
from orchestrator.workflow.context import JobContext, JobFailed, JobWaiting
from orchestrator.workflow.states import JobState

AMBIGUOUS_CHECKS = 5


@dataclass(frozen=True)
class Process:
    """One of Imagen's two long-running jobs on a project, and the states around it."""

    action: str
    requested: JobState
    running: JobState
    finished: JobState
    retry_from: JobState
    """Where `orchestrator retry` starts over when Imagen reports failure."""


EDIT = Process("edit", JobState.EDIT_REQUESTED, JobState.EDITING, JobState.EDITED,
               JobState.EDIT_REQUESTED)
EXPORT = Process("export", JobState.EXPORT_REQUESTED, JobState.EXPORTING, JobState.EXPORTED,
                 JobState.EXPORT_REQUESTED)


def _status_call(ctx: JobContext, process: Process) -> Callable[[str], Awaitable[TaskStatus]]:
    return ctx.client.edit_status if process is EDIT else ctx.client.export_status


async def request(ctx: JobContext, process: Process) -> None:
    """Send the edit or export request unless Imagen already has it, then mark it running.

    The job is already in the `requested` state (the intent) when this runs, so after a crash
    the status is asked first and the request is never sent twice.
    """
    uuid = ctx.project_uuid
    status_of = _status_call(ctx, process)
    for attempt in range(1, AMBIGUOUS_CHECKS + 1):
        try:
            status = await status_of(uuid)
        except ImagenNotFound:
            status = None
        # A failed earlier run of the task does not count: `retry` asks for a new one.
        if status is not None and not status.is_failed:
            if attempt == 1:
                await ctx.event("resume", f"{process.action} was already accepted by Imagen",
                                status=status.status)
            break
        try:
            crash_point(f"before_{process.action}_request")
            if process is EDIT:
                await ctx.client.start_edit(uuid, await _edit_options(ctx))
            else:
                await ctx.client.start_export(uuid)
            crash_point(f"after_{process.action}_request")
            break
        except ImagenAmbiguous as exc:
            await ctx.event("retry", f"{process.action} request unconfirmed ({exc}); "
                            "asking Imagen", attempt=attempt)
            await ctx.nap(min(2.0**attempt, 30.0))
        except ImagenBadRequest as exc:
            raise JobFailed(f"Imagen refused the {process.action} request: {exc}",
                            back_to=process.requested) from exc
    else:
        raise ImagenUnavailable(f"could not confirm whether the {process.action} started; "
                                "run again to check")
    await ctx.advance(process.running, f"{process.action} accepted by Imagen")


async def wait(ctx: JobContext, process: Process) -> None:
    """Poll the status with growing pauses until Imagen finishes, fails, or the deadline."""
    uuid = ctx.project_uuid
    status_of = _status_call(ctx, process)
    # Counted from when the job entered this state: a resumed run or a daemon's wake-up
    # keeps the deadline and the backoff of the first poll.
    since = (await ctx.store.entered_state_at(ctx.job.id, process.running)
             or ctx.job.updated_at).timestamp()
    deadline = time.monotonic() + ctx.config.wait_deadline - max(0.0, time.time() - since)
    delay = ctx.config.poll_initial
    last_seen = ""
    stage = process.action
    ctx.progress.stage_started(ctx.label, stage, files=0, total_bytes=None)
    while True:
        try:
            status = await status_of(uuid)
        except ImagenNotFound:
            status = TaskStatus(status="Unknown", details="Imagen does not know this task yet")
        ctx.progress.waiting(ctx.label, stage, status.progress, status.status)
        if status.status.lower() != last_seen:
            last_seen = status.status.lower()
            if not (status.is_terminal or last_seen in _KNOWN_WAITING):
                await ctx.event("note", f"unknown {stage} status {status.status!r}; waiting")
        if status.is_completed:
            ctx.progress.stage_finished(ctx.label, stage)
            await ctx.advance(process.finished, f"{stage} completed")
            return
        if status.is_failed:
            detail = f": {status.details}" if status.details else ""
            raise JobFailed(f"Imagen reported the {stage} failed{detail}",
                            back_to=process.retry_from)
        if time.monotonic() > deadline:
            hours = ctx.config.wait_deadline / 3600
            raise JobFailed(f"the {stage} did not finish within {hours:g} h",
                            back_to=process.running)
        if not ctx.config.wait_inline:
            # Back off with the time already waited: a long edit is polled rarely.
            raise JobWaiting(min(ctx.config.poll_max,
                                 max(ctx.config.poll_initial, (time.time() - since) / 4)))
        await ctx.nap(delay)
        delay = min(delay * ctx.config.poll_growth, ctx.config.poll_max)


async def _edit_options(ctx: JobContext) -> EditOptions:
    """The edit request, with a fresh callback URL whose secret is stored only as a hash."""
    options = ctx.edit_options()
    if ctx.config.callback_base is None:
        return options
    secret = secrets.token_urlsafe(32)
    await ctx.store.update_job(ctx.lease, ctx.state,
                               callback_secret_hash=callback_secret_hash(secret))
    url = f"{ctx.config.callback_base.rstrip('/')}/callbacks/{secret}"
    return options.model_copy(update={"callback_url": url})


def callback_secret_hash(secret: str) -> str:
    """How a callback secret is stored and looked up: its SHA-256, never the secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


_KNOWN_WAITING = frozenset({"pending", "in progress", "processing", "queued", "unknown"})
