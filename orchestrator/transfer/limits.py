"""Process-wide limits on transfers: how many run at once, and how many bytes per second."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator


class AdaptiveLimiter:
    """Bounds how many transfers run at once, and adapts the bound to storage's throttling.

    Additive increase, multiplicative decrease: the limit starts at `maximum`, halves when
    storage throttles (at most once per `cooldown` seconds, so a burst of 429s counts as one
    signal) and grows back by one after `increase_every` successes in a row. Waiters are served
    first come, first served.
    """

    def __init__(
        self, maximum: int, *, minimum: int = 1, increase_every: int = 8, cooldown: float = 1.0
    ) -> None:
        if minimum < 1 or maximum < minimum:
            raise ValueError(f"need 1 <= minimum <= maximum, got {minimum} and {maximum}")
        if increase_every < 1:
            raise ValueError(f"increase_every must be at least 1, got {increase_every}")
        self._maximum = maximum
        self._minimum = minimum
        self._increase_every = increase_every
        self._cooldown = cooldown
        self._limit = maximum
        self._in_flight = 0
        self._successes = 0
        self._last_cut: float | None = None
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    @property
    def limit(self) -> int:
        """How many transfers may run at once right now."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """How many transfers hold a slot right now."""
        return self._in_flight

    def close(self) -> None:
        """Start no more transfers (the process is stopping): those in flight go on, and any
        new one waits until it is cancelled."""
        self._closed = True

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the `limit` slots for the duration of the block."""
        if self._closed:
            await asyncio.Event().wait()  # never set: the stop that closed us cancels this
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    def on_success(self) -> None:
        """A transfer went through: after enough of those in a row, allow one more at once."""
        self._successes += 1
        if self._successes >= self._increase_every:
            self._successes = 0
            if self._limit < self._maximum:
                self._limit += 1
                self._wake()

    def on_throttle(self) -> None:
        """Storage asked us to slow down: halve the limit, unless it was just halved."""
        now = time.monotonic()
        self._successes = 0
        if self._last_cut is not None and now - self._last_cut < self._cooldown:
            return
        self._last_cut = now
        self._limit = max(self._minimum, self._limit // 2)

    async def _acquire(self) -> None:
        if not self._waiters and self._in_flight < self._limit:
            self._in_flight += 1
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # The slot was handed over just as we were cancelled: pass it on.
                self._release()
            elif waiter in self._waiters:
                self._waiters.remove(waiter)
            raise

    def _release(self) -> None:
        self._in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        # Slots are handed to waiters directly (counted here), so a newcomer cannot jump the queue.
        while self._waiters and self._in_flight < self._limit and not self._closed:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._in_flight += 1
                waiter.set_result(None)


class RateLimiter:
    """A global bandwidth cap: a token bucket in bytes per second; `None` means unlimited.

    The bucket starts empty so the cap holds from the first byte; while idle it fills up to
    `burst` bytes (default: one second's worth). Callers that overdraw it wait off their debt,
    which spreads the bandwidth evenly over everyone consuming at once.
    """

    def __init__(self, bytes_per_second: float | None, *, burst: float | None = None) -> None:
        if bytes_per_second is not None and bytes_per_second <= 0:
            raise ValueError(f"bandwidth must be positive, got {bytes_per_second}")
        self._rate = bytes_per_second
        self._burst = burst if burst is not None else (bytes_per_second or 0.0)
        self._tokens = 0.0
        self._stamp: float | None = None

    async def consume(self, n: int) -> None:
        """Account for `n` bytes, waiting as long as the cap requires."""
        if self._rate is None or n <= 0:
            return
        now = time.monotonic()
        if self._stamp is not None:
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= n
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)
