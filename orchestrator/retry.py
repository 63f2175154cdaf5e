"""Retry behaviour as data: one policy object, full-jitter backoff, Retry-After honoured.

Shared by the Imagen client and the transfers, which is why it sits below both.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

from orchestrator.words import plural

T = TypeVar("T")

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again later" for every call we make."""


class RetryableError(Exception):
    """A failure worth another attempt; `retry_after` is the server's hint in seconds, if any."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RetriesExhausted(Exception):
    """Every attempt allowed by the policy failed; `last` is the final retryable error."""

    def __init__(self, attempts: int, last: RetryableError) -> None:
        super().__init__(f"gave up after {plural(attempts, 'attempt')}: {last}")
        self.attempts = attempts
        self.last = last


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """How often and how patiently a failing call is tried again."""

    initial_interval: float = 0.5
    """Upper bound of the first backoff, in seconds."""
    backoff_coefficient: float = 2.0
    """Factor by which the upper bound grows after each failed attempt."""
    maximum_interval: float = 30.0
    """Ceiling of any single backoff in seconds (a Retry-After may ask for more)."""
    maximum_attempts: int = 8
    """Total attempts including the first; 0 means no limit."""
    max_retry_after: float = 120.0
    """Longest server-requested wait we honour, in seconds."""
    retryable_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)
    """HTTP statuses treated as transient."""

    def backoff(
        self, attempt: int, *, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based), with full jitter."""
        ceiling = min(
            self.maximum_interval, self.initial_interval * self.backoff_coefficient ** (attempt - 1)
        )
        delay = (rng or random).uniform(0.0, ceiling)
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.max_retry_after))
        return delay

    def allows(self, attempt: int) -> bool:
        """Whether another attempt may follow failed attempt number `attempt`."""
        return self.maximum_attempts == 0 or attempt < self.maximum_attempts


async def call_with_retry(
    fn: Callable[[], Awaitable[T]],
    policy: RetryPolicy,
    *,
    on_retry: Callable[[int, RetryableError, float], None] | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run `fn` until it succeeds, raises a non-retryable error, or the policy gives up.

    Only `RetryableError` is retried; anything else propagates at once.
    """
    attempt = 0
    while True:
        attempt += 1
        try:
            return await fn()
        except RetryableError as exc:
            if not policy.allows(attempt):
                raise RetriesExhausted(attempt, exc) from exc
            delay = policy.backoff(attempt, retry_after=exc.retry_after)
            if on_retry is not None:
                on_retry(attempt, exc, delay)
            await sleep(delay)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None if absent or odd."""
    if not value:
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        # RFC 9110 dates are always GMT; "-0000" parses as naive.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
