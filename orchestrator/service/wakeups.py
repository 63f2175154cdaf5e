"""Waking the scheduler early: a callback, a submitted job, a finished drive, another daemon.

In one process an asyncio event does it. Across daemons on one Postgres, the statement that
makes a job due also sends NOTIFY on `WAKE_CHANNEL`, and every daemon LISTENs on a connection
of its own, reconnecting with backoff when the database goes away. Nothing depends on a
notification arriving: the scheduler also wakes at the next `wake_at` it knows of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.engine import make_url

from orchestrator.retry import RetryPolicy
from orchestrator.store.scheduling import WAKE_CHANNEL, database_errors

log = logging.getLogger("orchestrator.daemon")

RECONNECT = RetryPolicy(initial_interval=0.5, maximum_interval=15.0, maximum_attempts=0)
"""How patiently the listener reconnects to a database that went away."""
KEEPALIVE_SECONDS = 10.0
"""How often the listening connection is checked: a silent network cut shows no other way."""


class Wakeups:
    """A wake-up flag for the scheduler, set in this process or by Postgres NOTIFY."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def wake(self) -> None:
        """Make the scheduler look for due jobs now."""
        self._event.set()

    def clear(self) -> None:
        """Forget earlier wake-ups: the scheduler is about to look anyway."""
        self._event.clear()

    async def wait(self, seconds: float) -> None:
        """Sleep until woken or `seconds` pass."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)

    async def listen(self, database_url: str) -> None:
        """Relay NOTIFYs on `WAKE_CHANNEL` into wake-ups until cancelled (Postgres only)."""
        dsn = (
            make_url(database_url)
            .set(drivername="postgresql")
            .render_as_string(hide_password=False)
        )
        failures = 0
        while True:
            try:
                await self._listen_once(dsn)
                failures = 0
            except database_errors() as exc:
                failures += 1
                delay = RECONNECT.backoff(failures)
                log.warning(
                    "wake-up listener cannot reach the database; trying again",
                    extra={"error": type(exc).__name__, "retry_in": round(delay, 2)},
                )
                await asyncio.sleep(delay)

    async def _listen_once(self, dsn: str) -> None:
        """LISTEN on one new connection until it breaks; raise only if it cannot be opened."""
        # Loaded here: only a daemon on Postgres listens, and one on SQLite never needs it.
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(dsn, timeout=10)
        lost = asyncio.Event()
        conn.add_termination_listener(lambda _conn: lost.set())
        try:
            await conn.add_listener(WAKE_CHANNEL, lambda *_args: self.wake())
            # Notifications sent while nobody listened are gone: look at the table instead.
            self.wake()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
                if not lost.is_set():
                    await conn.execute("SELECT 1", timeout=KEEPALIVE_SECONDS)
        except database_errors() as exc:
            log.warning(
                "wake-up listener lost the database; reconnecting",
                extra={"error": type(exc).__name__},
            )
        finally:
            conn.terminate()
