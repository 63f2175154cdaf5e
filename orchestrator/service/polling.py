"""The daemon's poller: the safety-net status polls of jobs waiting on Imagen, within a budget.

Callbacks get lost, so a waiting job is still asked about now and then; but how often Imagen is
asked is the operator's setting (`poll_budget`, polls a second for every daemon on the
database together), not a consequence of how many jobs wait. Each round takes the due polls the
budget grants (longest overdue first), asks Imagen once per job (Imagen has no status of
several projects at once), and writes the batch back: a poll costs one request and at most two
transactions, shared by the whole batch. A job Imagen is done with (or that failed, or whose
deadline passed) is made due for a drive, which asks once more and moves it on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from orchestrator.errors import Transient
from orchestrator.retry import RetryPolicy
from orchestrator.service.wakeups import Wakeups
from orchestrator.store.polling import DuePoll, Polled, settle_polls, take_polls
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors
from orchestrator.workflow.context import EngineConfig
from orchestrator.workflow.processing import POLLED, poll_interval, poll_status

if TYPE_CHECKING:
    from orchestrator.imagen.client import ImagenClient

log = logging.getLogger("orchestrator.daemon")

MAX_BATCH = 100
"""Most polls one round sends at once (a large budget is spent in rounds of this many)."""
ROUND_SECONDS = 2.0
"""How often a poller with due polls looks at the budget: two transactions a round, whatever
the batch (a daemon that found the budget spent waits a random part of a round more, so that
daemons do not all look at the same instant)."""
IDLE_SECONDS = 10.0
"""Longest the poller sleeps without looking: how late a poll of a job another daemon put to
wait can be at worst (this daemon's own are looked at as soon as they wait)."""
FAILURE_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=30.0, maximum_attempts=0)
"""How the poller backs off while the database is unreachable (or a bug repeats)."""


@dataclass(frozen=True, kw_only=True)
class PollSettings:
    """The budget and the pacing of the safety-net polls."""

    budget: float
    """Status polls a second, for every daemon on the database together."""
    lease_ttl: float
    """How long a job stays leased for its poll if this daemon dies mid-poll."""

    @property
    def burst(self) -> float:
        """Seconds of budget a round may spend at once: `ROUND_SECONDS`' worth (at least one
        poll, at most `MAX_BATCH`). Rounds, not single polls, keep the transactions few."""
        return max(1 / self.budget, min(ROUND_SECONDS, MAX_BATCH / self.budget))


class Poller:
    """Polls the due waiting jobs of every daemon on the database, within the shared budget."""

    def __init__(
        self,
        *,
        store: Store,
        imagen: ImagenClient,
        config: EngineConfig,
        owner: str,
        settings: PollSettings,
        wakeups: Wakeups,
    ) -> None:
        self._store = store
        self._imagen = imagen
        self._config = config
        self._owner = owner
        self._settings = settings
        self._wakeups = wakeups
        self._nudged = asyncio.Event()
        self.polls = 0
        """Status requests sent so far (for the metrics and the tests)."""

    def nudge(self) -> None:
        """Look again now: a job of this daemon has just started waiting."""
        self._nudged.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set."""
        failures = 0
        while not stop.is_set():
            self._nudged.clear()
            try:
                delay = await self.round()
                failures = 0
            except database_errors() as exc:
                failures += 1
                delay = FAILURE_RETRY.backoff(failures)
                log.warning(
                    "poller cannot reach the database; retrying",
                    extra={"error": type(exc).__name__, "retry_in": round(delay, 2)},
                )
            except Exception:
                failures += 1
                delay = FAILURE_RETRY.backoff(failures)
                log.exception("poller error; retrying", extra={"retry_in": round(delay, 2)})
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await _first(self._nudged.wait(), stop.wait())

    async def round(self) -> float:
        """Take what the budget grants, poll it, write it back; seconds until the next look."""
        grant = await take_polls(
            self._store,
            self._owner,
            states=POLLED.keys(),
            rate=self._settings.budget,
            burst=self._settings.burst,
            ttl=self._settings.lease_ttl,
        )
        if grant.polls:
            # The batch's next polls keep its order (a microsecond apart): the first overdue
            # stays first, so batch mates never overtake each other round after round.
            base = datetime.now(UTC)
            polled = await asyncio.gather(
                *(
                    self._poll(due, base + timedelta(microseconds=n))
                    for n, due in enumerate(grant.polls)
                )
            )
            if await settle_polls(self._store, polled):
                self._wakeups.wake()
        if grant.look_again_in is None:
            return IDLE_SECONDS
        if grant.spent:
            return min(grant.look_again_in + random.uniform(0, self._settings.burst), IDLE_SECONDS)
        return min(grant.look_again_in, IDLE_SECONDS)

    async def _poll(self, due: DuePoll, now: datetime) -> Polled:
        """Ask Imagen once; the job's next poll, or None when a drive must take it on."""
        job_id = due.lease.job_id
        if due.deadline is None or due.deadline <= now or not due.project_uuid:
            return Polled(due.lease, None)  # the drive fails it with the deadline's words
        waited = now.timestamp() - (due.deadline.timestamp() - self._config.wait_deadline)
        again = Polled(due.lease, now + timedelta(seconds=poll_interval(self._config, waited)))
        self.polls += 1
        try:
            status = await poll_status(self._imagen, due.state, due.project_uuid)
        except Transient as exc:
            log.warning(
                "status poll failed; asking again later",
                extra={"job_id": job_id, "error": str(exc)},
            )
            return again
        except Exception:
            log.exception("status poll failed; the job's drive will look", extra={"job_id": job_id})
            return Polled(due.lease, None)
        if status.is_completed or status.is_failed:
            log.info("Imagen is done; driving the job", extra={"job_id": job_id})
            return Polled(due.lease, None)
        return again


async def _first(*waits: Coroutine[Any, Any, object]) -> None:
    """Return when the first of the coroutines is done; cancel the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
