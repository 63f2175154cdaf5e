"""The engine: drives one job from its current state to the end, one checkpoint at a time."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.errors import OperatorRefusal, OrchestratorError, Transient
from orchestrator.progress import ProgressSink
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import Lease, StaleLease, Store
from orchestrator.workflow.context import (
    EngineConfig,
    JobContext,
    JobFailed,
    JobWaiting,
    Services,
)
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.lease import CANCELLED, Held, held
from orchestrator.workflow.pipeline import Pipeline


@dataclass(frozen=True)
class Outcome:
    """How driving a job ended: its last snapshot and, if it stopped early, why."""

    job: Job
    paused: str | None = None
    """Why the job stopped before the end (Imagen unreachable, disk full)."""
    waiting: bool = False
    """The job sleeps in the database until its wake_at (daemon mode)."""


class Engine:
    """Drives jobs: claims the lease, runs the step of each state (`lease.held` keeps the
    lease alive)."""

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
        async with held(
            self.store,
            lease,
            ttl=self.config.lease_ttl,
            cancel_poll=self.config.cancel_poll_seconds,
        ) as holding:
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
            return await self._drive_until_stopped(ctx, holding)

    async def _drive_until_stopped(self, ctx: JobContext, holding: Held) -> Outcome:
        """Run the steps; turn the heartbeat's stop for a cancel into its outcome (a lost
        lease `held` turns into StaleLease)."""
        try:
            if self.config.wait_inline and ctx.state not in (JobState.QUEUED, *TERMINAL_STATES):
                # A person ran the command again (the daemon's wake-ups are routine, not news).
                await ctx.event("resume", f"resuming in state {ctx.state}")
            return await self._run_steps(ctx)
        except asyncio.CancelledError:
            if holding.stopped is None:
                # Ctrl-C, SIGTERM or shutdown: say so in the history, then let it unwind.
                with contextlib.suppress(Exception):
                    await ctx.event(
                        "interrupted", f"stopped by the user or the system in state {ctx.state}"
                    )
                raise
            if holding.stopped != CANCELLED:
                raise
            holding.carry_on()
            await ctx.cancelled()
            return Outcome(ctx.job)

    async def _run_steps(self, ctx: JobContext) -> Outcome:
        if ctx.job.cancel_requested and ctx.state not in TERMINAL_STATES:
            await ctx.cancelled()
        while ctx.state not in TERMINAL_STATES:
            try:
                await ctx.stage.step(ctx)
            except JobWaiting as exc:
                next_look = utcnow() + timedelta(seconds=exc.delay)
                if exc.deadline is None:
                    await ctx.store.sleep_until(ctx.lease, ctx.state, next_look)
                else:
                    # Waiting on Imagen: the poller asks at `next_look` (within the daemons'
                    # budget); a drive comes back only for news or at the deadline.
                    await ctx.store.sleep_until(
                        ctx.lease, ctx.state, exc.deadline, poll_at=next_look
                    )
                await ctx.refresh()
                return Outcome(ctx.job, waiting=True)
            except Transient as exc:
                # A refused key (CredentialsRefused) too: the key was checked before anything
                # was sent, so the account changed since; the job keeps its state and says why.
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
