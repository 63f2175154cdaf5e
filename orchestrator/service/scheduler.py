"""The daemon's run loop: claim due jobs up to a cap, drive each in a task, sleep until due.

A job holds a task only while there is work to do. When it waits for Imagen the engine gives
its lease back and leaves a `wake_at` in the database; the scheduler sleeps until the earliest
`wake_at` (or a lease expiry) it knows of, or until woken (callback, NOTIFY, a freed slot).

When the database goes away, the drives it breaks cannot give their leases back. A drive
broken by the database is not parked as a failure: the scheduler notes that leases may be
stranded and, at its first look once the database answers, gives back every lease in its own
name on a job it no longer works on (`take_back_stranded`), so those jobs go on at once
instead of a lease TTL later. Another daemon's leases are never touched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import timedelta

from orchestrator.retry import RetryPolicy
from orchestrator.service.health import DatabaseHealth
from orchestrator.service.metrics import Metrics
from orchestrator.service.polling import Poller, PollSettings
from orchestrator.service.wakeups import Wakeups
from orchestrator.states import JobState
from orchestrator.store.models import utcnow
from orchestrator.store.queries import JobNotFound, LeaseHeld, StaleLease, StateConflict, Store
from orchestrator.store.scheduling import (
    Claim,
    claim_and_look_ahead,
    database_errors,
    is_outage,
    take_back_stranded,
    wake_if_called_back,
)
from orchestrator.workflow.engine import Engine, Outcome

log = logging.getLogger("orchestrator.daemon")

DATABASE_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=5.0, maximum_attempts=0)
"""How the scheduler backs off while the database is unreachable: a look is one cheap
transaction, and the jobs go on within this of the database answering again."""
MIN_SLEEP_SECONDS = 0.05
"""Shortest nap between two claims, so a row another daemon is claiming cannot make us spin."""
RELEASE_SECONDS = 10.0
"""How long shutdown waits for the drives to give their leases back."""


@dataclass(frozen=True, kw_only=True)
class SchedulerSettings:
    """How many jobs one daemon drives, and how it paces itself."""

    max_jobs: int
    """Jobs driven at once by this daemon; waiting jobs do not count."""
    lease_ttl: float
    """Seconds a claimed lease lasts without a heartbeat."""
    idle_seconds: float
    """Longest sleep without a wake-up."""
    pause_retry_seconds: float
    """When a job stopped by an unexpected error (a bug) is tried again."""
    poll_budget: float
    """Safety-net status polls a second, for every daemon on the database together."""


class Scheduler:
    """Claims due jobs and drives them, at most `max_jobs` at once."""

    def __init__(
        self,
        *,
        store: Store,
        engine: Engine,
        wakeups: Wakeups,
        metrics: Metrics,
        health: DatabaseHealth,
        settings: SchedulerSettings,
    ) -> None:
        self._store = store
        self._engine = engine
        self._wakeups = wakeups
        self._metrics = metrics
        self._health = health
        self._settings = settings
        self._drives: dict[str, asyncio.Task[None]] = {}
        self._stranded = False
        """The database failed us since the last look: some of our leases may be stranded."""
        self.poller = Poller(
            store=store,
            imagen=engine.services.imagen,
            config=engine.config,
            owner=engine.owner,
            settings=PollSettings(budget=settings.poll_budget, lease_ttl=settings.lease_ttl),
            wakeups=wakeups,
        )

    @property
    def owner(self) -> str:
        """The lease owner name of this daemon."""
        return self._engine.owner

    async def run(self, stop: asyncio.Event) -> None:
        """Loop until `stop` is set, then stop every drive and give its lease back."""
        failures = 0
        ready = False
        stopping = asyncio.create_task(stop.wait())
        polling = asyncio.create_task(self.poller.run(stop), name="poller")
        try:
            while not stop.is_set():
                self._wakeups.clear()
                try:
                    ready = ready or await self._ready()
                    if ready:
                        delay = await self._tick()
                        failures = 0
                    else:
                        failures += 1
                        delay = DATABASE_RETRY.backoff(failures)
                except database_errors() as exc:
                    ready = False
                    self._stranded = True
                    failures += 1
                    delay = DATABASE_RETRY.backoff(failures)
                    self._metrics.database_up.set(0)
                    log.warning(
                        "database unreachable; retrying",
                        extra={"error": type(exc).__name__, "retry_in": round(delay, 2)},
                    )
                except Exception:
                    # A bug must not stop the daemon: say so loudly and look again later.
                    failures += 1
                    delay = DATABASE_RETRY.backoff(failures)
                    log.exception("scheduler error; retrying", extra={"retry_in": round(delay, 2)})
                waking = asyncio.create_task(self._wakeups.wait(delay))
                await asyncio.wait({waking, stopping}, return_when=asyncio.FIRST_COMPLETED)
                waking.cancel()
        finally:
            stopping.cancel()
            polling.cancel()
            await self._release_all()
            with contextlib.suppress(asyncio.CancelledError):
                await polling

    async def _ready(self) -> bool:
        """Whether the database answers with the schema this code knows (checked after outages)."""
        readiness = await self._health.check()
        self._metrics.database_up.set(readiness.database == "ok")
        if readiness.ready:
            log.info("database ready; taking jobs", extra={"schema": readiness.schema})
        else:
            log.warning(
                "not taking jobs: the database is not ready",
                extra={"database": readiness.database, "schema": readiness.schema},
            )
        return readiness.ready

    async def _tick(self) -> float:
        """Claim what is due and fits; return how long to sleep before looking again."""
        if self._stranded:
            await self._take_back_stranded()
        free = self._settings.max_jobs - len(self._drives)
        if free <= 0:
            return self._settings.idle_seconds
        claims, until = await claim_and_look_ahead(
            self._store, self.owner, self._settings.lease_ttl, free
        )
        for claim in claims:
            self._start(claim)
        if len(self._drives) >= self._settings.max_jobs or until is None:
            return self._settings.idle_seconds
        return min(max(until, MIN_SLEEP_SECONDS), self._settings.idle_seconds)

    async def _take_back_stranded(self) -> None:
        """Give back our leases that no drive of ours holds any more (after an outage)."""
        taken_back = await take_back_stranded(self._store, self.owner, set(self._drives))
        self._stranded = False
        if taken_back:
            log.warning(
                "gave back leases stranded by a database outage; their jobs go on now",
                extra={"jobs": len(taken_back), "job_ids": taken_back[:20]},
            )

    def _start(self, claim: Claim) -> None:
        job_id = claim.lease.job_id
        if claim.previous_owner is not None:
            self._metrics.lease_takeovers.inc()
            log.warning(
                "took over an expired lease",
                extra={
                    "job_id": job_id,
                    "previous_owner": claim.previous_owner,
                    "epoch": claim.lease.epoch,
                },
            )
        log.info("job claimed", extra={"job_id": job_id, "epoch": claim.lease.epoch})
        self._drives[job_id] = asyncio.create_task(self._drive(claim), name=f"drive-{job_id}")
        self._metrics.jobs_in_progress.set(len(self._drives))

    async def _drive(self, claim: Claim) -> None:
        """Drive one job until it waits, pauses or ends; never raises (but cancellation)."""
        job_id = claim.lease.job_id
        try:
            outcome = await self._engine.drive(job_id, lease=claim.lease)
            self._report(outcome)
            if outcome.waiting:
                self.poller.nudge()
                if await wake_if_called_back(self._store, job_id):
                    self._wakeups.wake()
        except asyncio.CancelledError:
            # Shutdown. The engine gives the lease back itself, except when cancelled before
            # its first step; giving it back twice is harmless (the write is fenced).
            with contextlib.suppress(*database_errors()):
                await self._store.release(claim.lease)
            raise
        except StaleLease as exc:
            self._metrics.leases_lost.inc()
            self._metrics.drives.labels("lease_lost").inc()
            log.warning(
                "lease lost: another worker drives the job now; this write was refused",
                extra={"job_id": job_id, "epoch": claim.lease.epoch, "error": str(exc)},
            )
        except Exception as exc:
            if is_outage(exc):
                # Not the job's fault: it goes on where its checkpoints say once the database
                # answers (its lease given back by the next look if this drive could not).
                self._stranded = True
                self._metrics.drives.labels("database_down").inc()
                log.warning(
                    "the database went away while driving the job; it goes on when it answers",
                    extra={"job_id": job_id, "error": type(exc).__name__},
                )
                return
            self._metrics.drives.labels("error").inc()
            log.exception("driving the job failed", extra={"job_id": job_id})
            await self._park(job_id, f"unexpected error: {type(exc).__name__}: {exc}")
        finally:
            # If this drive's lease expired, a newer drive of the same job (ours or not) may
            # have been started since: only this drive's own entry goes.
            if self._drives.get(job_id) is asyncio.current_task():
                del self._drives[job_id]
            self._metrics.jobs_in_progress.set(len(self._drives))
            self._wakeups.wake()

    def _report(self, outcome: Outcome) -> None:
        job = outcome.job
        fields = {"job_id": job.id, "state": job.state}
        if outcome.waiting:
            self._metrics.drives.labels("waiting").inc()
            log.info("job waits for Imagen", extra={**fields, "wake_at": job.wake_at})
        elif outcome.paused:
            self._metrics.drives.labels("paused").inc()
            log.warning(
                "job paused", extra={**fields, "reason": outcome.paused, "wake_at": job.wake_at}
            )
        else:
            self._metrics.drives.labels(job.state).inc()
            level = logging.ERROR if job.state == JobState.FAILED else logging.INFO
            log.log(level, f"job {job.state}", extra={**fields, "last_error": job.last_error})

    async def _park(self, job_id: str, reason: str) -> None:
        """Keep the job's state, record why it stopped, and try it again later.

        The engine lets these errors through without recording them and has already given the
        lease back, so the job is claimed again just long enough to write.
        """
        try:
            lease = await self._store.claim(job_id, self.owner, self._settings.lease_ttl)
        except LeaseHeld:
            self._stranded = True  # perhaps ours, kept by a release the database refused
            return
        except JobNotFound:
            return
        except database_errors():
            self._stranded = True
            log.warning(
                "could not record why the job stopped: the database is unreachable",
                extra={"job_id": job_id},
            )
            return
        try:
            wake_at = utcnow() + timedelta(seconds=self._settings.pause_retry_seconds)
            await self._store.pause(lease, reason, wake_at=wake_at)
            log.error(
                "job stopped; trying again later",
                extra={"job_id": job_id, "reason": reason, "wake_at": wake_at},
            )
        except database_errors(StaleLease, StateConflict):  # taken, moved on, or away
            log.warning("could not record why the job stopped", extra={"job_id": job_id})
        finally:
            with contextlib.suppress(*database_errors()):
                await self._store.release(lease)

    async def _release_all(self) -> None:
        """Stop every drive; each gives its lease back so another daemon can go on at once."""
        drives = list(self._drives.values())
        for task in drives:
            task.cancel()
        if drives:
            await asyncio.wait(drives, timeout=RELEASE_SECONDS)
            log.info("drives stopped and leases released", extra={"jobs": len(drives)})
