"""The engine: drives one job from its current state to the end, one checkpoint at a time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.errors import CredentialsRefused, OperatorRefusal, OrchestratorError, Transient
from orchestrator.progress import ProgressSink
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import Lease, StaleLease, Store
from orchestrator.store.scheduling import database_errors
from orchestrator.workflow.context import (
    EngineConfig,
    JobContext,
    JobFailed,
    JobWaiting,
    Services,
)
from orchestrator.workflow.pipeline import PIPELINE, Pipeline


@dataclass(frozen=True)
class Outcome:
    """How driving a job ended: its last snapshot and, if it stopped early, why."""

    job: Job
    paused: str | None = None
    """Why the job stopped before the end (Imagen unreachable, disk full)."""
    waiting: bool = False
    """The job sleeps in the database until its wake_at (daemon mode)."""


class Engine:
    """Drives jobs: claims the lease, runs the step of each state, keeps the lease alive."""

    def __init__(
        self,
        *,
        store: Store,
        services: Services,
        progress: ProgressSink,
        config: EngineConfig,
        owner: str,
        pipeline: Pipeline = PIPELINE,
    ) -> None:
        self.store = store
        self.services = services
        self.pipeline = pipeline
        self.progress = progress
        self.config = config
        self.owner = owner
        # Shared by every job this engine drives: a photo holds a slot from the start of its
        # transfer until its checkpoint is committed, so however many jobs run at once, a
        # crash finds at most `workers` transfers done but not saved, the ones it repeats.
        self.photo_slots = asyncio.Semaphore(config.workers)

    async def drive(self, job_id: str, *, lease: Lease | None = None) -> Outcome:
        """Drive the job until it completes, fails, is cancelled, must pause or (daemon) wait.

        Claims the job's lease unless the caller already holds one; gives it back at the end.
        """
        if lease is None:
            lease = await self.store.claim(job_id, self.owner, self.config.lease_ttl)
        main = asyncio.current_task()
        assert main is not None
        stop = _Stop()
        heartbeat = asyncio.create_task(self._heartbeat(lease, main, stop))
        try:
            ctx = JobContext(
                job=await self.store.get_job(job_id),
                lease=lease,
                store=self.store,
                services=self.services,
                progress=self.progress,
                config=self.config,
                pipeline=self.pipeline,
                photo_slots=self.photo_slots,
            )
            return await self._drive_until_stopped(ctx, main, stop)
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            with contextlib.suppress(Exception):
                await self.store.release(lease)

    async def _drive_until_stopped(
        self, ctx: JobContext, main: asyncio.Task[object], stop: _Stop
    ) -> Outcome:
        """Run the steps; turn the heartbeat's stop (cancel, lost lease) into its outcome."""
        try:
            if self.config.wait_inline and ctx.state not in (JobState.QUEUED, *TERMINAL_STATES):
                # A person ran the command again (the daemon's wake-ups are routine, not news).
                await ctx.event("resume", f"resuming in state {ctx.state}")
            return await self._run_steps(ctx)
        except asyncio.CancelledError:
            if stop.reason is None:
                # Ctrl-C, SIGTERM or shutdown: say so in the history, then let it unwind.
                with contextlib.suppress(Exception):
                    await ctx.event(
                        "interrupted", f"stopped by the user or the system in state {ctx.state}"
                    )
                raise
            main.uncancel()
            if stop.reason == "lease":
                raise StaleLease(
                    f"lost the lease of job {ctx.job.id[:8]}; another worker drives it now"
                ) from None
            await ctx.cancelled()
            return Outcome(ctx.job)

    async def _run_steps(self, ctx: JobContext) -> Outcome:
        if ctx.job.cancel_requested and ctx.state not in TERMINAL_STATES:
            await ctx.cancelled()
        while ctx.state not in TERMINAL_STATES:
            try:
                await ctx.stage.step(ctx)
            except JobWaiting as exc:
                await ctx.store.sleep_until(
                    ctx.lease, ctx.state, utcnow() + timedelta(seconds=exc.delay)
                )
                await ctx.refresh()
                return Outcome(ctx.job, waiting=True)
            except CredentialsRefused as exc:
                if self.config.wait_inline:
                    raise  # `run`: a refused key stops every job; the command says so once.
                # The daemon: the account may be put right meanwhile; the job tries again later.
                return await self._pause(ctx, str(exc))
            except Transient as exc:
                return await self._pause(ctx, str(exc))
            except OperatorRefusal:
                raise  # the operator's to hear (a command's exit code), not the job's to record
            except OrchestratorError as exc:
                # Refused: the user must act. Whatever it is, the job says why and waits for
                # `retry` where it stopped (or where the refusal says).
                back_to = exc.back_to if isinstance(exc, JobFailed) else None
                await ctx.fail(str(exc), back_to=back_to)
                ctx.note(str(exc), level="error")
        return Outcome(ctx.job)

    async def _pause(self, ctx: JobContext, reason: str) -> Outcome:
        wake_at = (
            None
            if self.config.wait_inline
            else utcnow() + timedelta(seconds=self.config.pause_retry_seconds)
        )
        with contextlib.suppress(StaleLease):
            await ctx.store.pause(ctx.lease, reason, wake_at=wake_at)
        await ctx.refresh()
        ctx.note(f"stopped for now: {reason}", level="error")
        return Outcome(ctx.job, paused=reason)

    async def _heartbeat(self, lease: Lease, main: asyncio.Task[object], stop: _Stop) -> None:
        """Renew the lease; stop the job's task if the lease is lost or a cancel arrives.

        The lease is renewed every third of its life; a cancel is looked for more often, so
        `orchestrator cancel` stops a running job within seconds. A database that does not
        answer is asked again at each turn; the job stops only once its lease has run out.
        """
        ttl = self.config.lease_ttl
        poll = min(self.config.cancel_poll_seconds, ttl / 3)
        renewed = time.monotonic()
        while stop.reason is None:
            await asyncio.sleep(poll)
            if time.monotonic() - renewed >= ttl / 3 - poll / 2:
                try:
                    if not await self.store.renew(lease, ttl):
                        stop.reason = "lease"
                    renewed = time.monotonic()
                except database_errors():
                    if time.monotonic() - renewed >= ttl - poll:
                        stop.reason = "lease"
            if stop.reason is None:
                with contextlib.suppress(*database_errors()):
                    if await self.store.cancel_requested(lease.job_id):
                        stop.reason = "cancel"
        main.cancel()


@dataclass
class _Stop:
    """Why the heartbeat stopped the job's task: "lease" lost or user "cancel"."""

    reason: str | None = None
