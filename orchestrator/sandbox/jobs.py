"""One edit or export run: when it is due, how far it looks, and how it ended.

Progress is computed from the monotonic clock, so polling costs nothing: Pending for the first
tenth of the run, In Progress until the deadline, then Completed (or Failed) once the background
task that writes the outputs has settled the outcome.
"""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple

PENDING_FRACTION = 0.1


class JobStatus(NamedTuple):
    """A status answer: `status` is Title Case as on the wire, `progress` 0–100."""

    status: str
    progress: float
    details: str | None


class Job:
    """The timing and outcome of one edit or export."""

    def __init__(self, *, starts_at: float, duration: float) -> None:
        self.starts_at = starts_at
        self.duration = duration
        self._settled = asyncio.Event()
        self._failure: str | None = None

    @property
    def deadline(self) -> float:
        """Monotonic time at which the run is due to end."""
        return self.starts_at + self.duration

    @property
    def settled(self) -> bool:
        """Whether the outcome is known."""
        return self._settled.is_set()

    @property
    def failed(self) -> bool:
        """Whether the run ended in failure."""
        return self._failure is not None

    def settle(self, failure: str | None = None) -> None:
        """Record the outcome: None for success, else why it failed."""
        self._failure = failure
        self._settled.set()

    async def wait_settled(self) -> None:
        """Return once the outcome is known."""
        await self._settled.wait()

    async def wait_due(self) -> None:
        """Sleep until the deadline."""
        await asyncio.sleep(max(0.0, self.deadline - time.monotonic()))

    def status_at(self, now: float) -> JobStatus:
        """The status a poll at monotonic time `now` sees."""
        if self._settled.is_set():
            if self._failure is not None:
                return JobStatus("Failed", 100.0, self._failure)
            return JobStatus("Completed", 100.0, None)
        elapsed = now - self.starts_at
        if elapsed < 0:
            return JobStatus("Pending", 0.0, None)
        fraction = min(1.0, elapsed / self.duration) if self.duration > 0 else 1.0
        progress = round(min(fraction * 100.0, 99.0), 1)
        if fraction < PENDING_FRACTION:
            return JobStatus("Pending", progress, None)
        return JobStatus("In Progress", progress, None)

    async def status(self) -> JobStatus:
        """The current status; once due, waits the moment it takes the outcome to settle."""
        # Past the deadline the outputs are being finished off; waiting for them means a client
        # polling on time sees "Completed" rather than a stale "In Progress".
        if not self._settled.is_set() and time.monotonic() >= self.deadline:
            await self._settled.wait()
        return self.status_at(time.monotonic())
