"""One file's attempts: policy retries, fresh links after a 403, a concurrency slot, AIMD."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from orchestrator.retry import RetriesExhausted, RetryableError, RetryPolicy, call_with_retry
from orchestrator.transfer.errors import LinkExpired, TransferFailed, VerificationFailed
from orchestrator.transfer.limits import AdaptiveLimiter
from orchestrator.words import plural

T = TypeVar("T")

LinkSource = Callable[[bool], Awaitable[str]]
"""Gives the file's presigned link: the current one with False, a fresh one with True."""

RetryReporter = Callable[[str, int, str, float], None]
"""Told (file name, failed attempt number, reason, delay in seconds) before each retry."""

MAX_FRESH_LINKS = 5
"""Fresh links one file may ask for; past that the 403 is not about expiry and the file fails."""


class Throttled(RetryableError):
    """Storage asked us to slow down (429, 503, S3 SlowDown): retry, and lower the concurrency."""


class Mismatch(RetryableError):
    """A download arrived complete but failed verification: worth another attempt, then fatal."""


async def attempt_until_done(
    file_name: str,
    attempt: Callable[[str], Awaitable[T]],
    *,
    link: LinkSource,
    policy: RetryPolicy,
    limiter: AdaptiveLimiter,
    on_retry: RetryReporter | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> tuple[T, int]:
    """Run `attempt(url)` until it succeeds; the result and how many attempts it took.

    An expired link (403) is not the transfer's fault, so the attempt is repeated at once with
    a fresh link without using up one of the policy's attempts. Each try holds one limiter slot;
    fetching links and backing off happen outside it.
    """
    url: str | None = None
    fresh_links = 0
    attempts = 0

    async def once() -> T:
        nonlocal url, fresh_links, attempts
        attempts += 1
        refresh = False
        while True:
            if url is None or refresh:
                url = await link(refresh)
            try:
                async with limiter.slot():
                    result = await attempt(url)
            except LinkExpired as exc:
                fresh_links += 1
                if fresh_links > MAX_FRESH_LINKS:
                    raise TransferFailed(
                        file_name,
                        f"storage still refuses the link after {MAX_FRESH_LINKS} fresh "
                        f"ones ({exc.detail})",
                    ) from None
                refresh = True
                continue
            except Throttled:
                limiter.on_throttle()
                raise
            limiter.on_success()
            return result

    def report(number: int, exc: RetryableError, delay: float) -> None:
        if on_retry is not None:
            on_retry(file_name, number, str(exc), delay)

    try:
        value = await call_with_retry(once, policy, on_retry=report, sleep=sleep)
    except RetriesExhausted as exc:
        if isinstance(exc.last, Mismatch):
            raise VerificationFailed(file_name, str(exc.last)) from None
        raise TransferFailed(
            file_name, f"gave up after {plural(exc.attempts, 'attempt')}: {exc.last}"
        ) from None
    return value, attempts
