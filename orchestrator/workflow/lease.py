"""Holding a job's lease: the one place that makes "one driver per job" true.

Whoever acts on a job's record (the engine driving it, the planner adding photos, an operator's
review, keyword rewrite or redelivery) holds its lease for as long as it acts: `held` keeps a
lease alive by heartbeat and gives it back at the end, `borrow` first takes it, waiting a
little for a driver that is about to let go, and `run_alone` runs one stage's work on a job
outside the engine's loop. Every write a holder makes is fenced by the lease (owner + epoch,
`store/queries.py`), so a holder whose lease was taken over can change nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TypeVar

from orchestrator.progress import ProgressSink
from orchestrator.store.queries import Lease, LeaseHeld, StaleLease, Store, process_owner
from orchestrator.store.scheduling import database_errors
from orchestrator.workflow.context import EngineConfig, JobContext, Services
from orchestrator.workflow.journey import PIPELINE
from orchestrator.workflow.pipeline import Pipeline

T = TypeVar("T")

CLAIM_ATTEMPTS = 6
"""Tries to take a lease someone holds (a daemon looking at the job lets go within moments)."""
FIRST_CLAIM_WAIT = 0.1
"""Seconds before the second try; each later wait is twice the last (3.1 s in all)."""

LOST = "lease"
"""`Held.stopped`: a renewal found the lease taken over, or the database did not answer
until the lease ran out."""
CANCELLED = "cancel"
"""`Held.stopped`: `orchestrator cancel` asked the job to stop (watched by the engine only)."""


@dataclass
class Held:
    """A lease being kept alive for the task that holds it."""

    lease: Lease
    task: asyncio.Task[object]
    """The holder's task: cancelled by the heartbeat when it must stop."""
    stopped: str | None = None
    """Why the heartbeat cancelled the task (LOST, CANCELLED); None while it holds."""

    def carry_on(self) -> None:
        """Take back the heartbeat's cancellation, so the holder can record the cancel."""
        self.task.uncancel()


@asynccontextmanager
async def held(
    store: Store, lease: Lease, *, ttl: float, cancel_poll: float | None = None
) -> AsyncIterator[Held]:
    """Keep `lease` alive while the block runs, then give it back (also on error or cancel).

    If the lease is lost the block is cancelled and StaleLease raised in its place. With
    `cancel_poll`, `orchestrator cancel` is looked for that often and cancels the block too
    (`Held.stopped` says which; the holder decides what a cancel means).
    """
    task = asyncio.current_task()
    assert task is not None
    holding = Held(lease, task)
    heartbeat = asyncio.create_task(_heartbeat(store, holding, ttl, cancel_poll))
    try:
        yield holding
    except asyncio.CancelledError:
        if holding.stopped != LOST:
            raise
        holding.carry_on()
        raise StaleLease(
            f"lost the lease of job {lease.job_id[:8]}; another worker drives it now"
        ) from None
    finally:
        heartbeat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await heartbeat
        with contextlib.suppress(Exception):
            await store.release(lease)


async def _heartbeat(store: Store, holding: Held, ttl: float, cancel_poll: float | None) -> None:
    """Renew the lease every third of its life; stop the holder if it is lost or cancelled.

    A database that does not answer is asked again at each turn; the holder stops only once
    its lease has run out (no other worker may take it before then).
    """
    poll = min(cancel_poll, ttl / 3) if cancel_poll is not None else ttl / 3
    renewed = time.monotonic()
    while holding.stopped is None:
        await asyncio.sleep(poll)
        if time.monotonic() - renewed >= ttl / 3 - poll / 2:
            try:
                if not await store.renew(holding.lease, ttl):
                    holding.stopped = LOST
                renewed = time.monotonic()
            except database_errors():
                if time.monotonic() - renewed >= ttl - poll:
                    holding.stopped = LOST
        if holding.stopped is None and cancel_poll is not None:
            with contextlib.suppress(*database_errors()):
                if await store.cancel_requested(holding.lease.job_id):
                    holding.stopped = CANCELLED
    holding.task.cancel()


async def claim_patiently(store: Store, job_id: str, owner: str, ttl: float) -> Lease:
    """Take the job's lease, trying again while someone holds it; LeaseHeld after the last try."""
    wait = FIRST_CLAIM_WAIT
    for _ in range(CLAIM_ATTEMPTS - 1):
        try:
            return await store.claim(job_id, owner, ttl)
        except LeaseHeld:
            await asyncio.sleep(wait)
            wait *= 2
    return await store.claim(job_id, owner, ttl)


@asynccontextmanager
async def borrow(store: Store, job_id: str, *, purpose: str, ttl: float) -> AsyncIterator[Lease]:
    """The job's lease for an action outside the engine (`purpose` names it in the lease
    owner): taken patiently, kept alive while the block runs, given back at its end."""
    lease = await claim_patiently(store, job_id, f"{process_owner()}:{purpose}", ttl)
    async with held(store, lease, ttl=ttl):
        yield lease


async def run_alone(
    store: Store,
    job_id: str,
    work: Callable[[JobContext], Awaitable[T]],
    *,
    purpose: str,
    services: Services,
    progress: ProgressSink,
    config: EngineConfig,
    pipeline: Pipeline = PIPELINE,
) -> T:
    """Run one stage's `work` on a job outside the engine's loop (an operator's redelivery),
    under the borrowed lease, with the job's current snapshot and only the `services` it uses."""
    async with borrow(store, job_id, purpose=purpose, ttl=config.lease_ttl) as lease:
        ctx = JobContext(
            job=await store.get_job(job_id),
            lease=lease,
            store=store,
            services=services,
            progress=progress,
            config=config,
            pipeline=pipeline,
            photo_slots=asyncio.Semaphore(config.workers),
        )
        return await work(ctx)
