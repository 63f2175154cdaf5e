"""Concurrency (AIMD) and bandwidth limits of the transfers, and the rate syntax users type."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest

from orchestrator.rules.rates import parse_rate
from orchestrator.transfer import limits
from orchestrator.transfer.limits import AdaptiveLimiter, RateLimiter


async def test_slots_are_bounded_by_the_limit_and_served_in_order() -> None:
    limiter = AdaptiveLimiter(2)
    order: list[int] = []
    release = asyncio.Event()

    inside = [0, 0]  # now, most ever

    async def worker(number: int) -> None:
        async with limiter.slot():
            inside[0] += 1
            inside[1] = max(inside)
            order.append(number)
            await release.wait()
            await asyncio.sleep(0)  # the next holder may enter only once this one has left
            inside[0] -= 1

    tasks = [asyncio.create_task(worker(n)) for n in range(4)]
    await asyncio.sleep(0.01)
    assert limiter.in_flight == 2
    assert order == [0, 1]
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3]
    assert limiter.in_flight == 0
    assert inside[1] == 2  # never more than the limit at once


async def test_a_cancelled_waiter_does_not_leak_a_slot() -> None:
    limiter = AdaptiveLimiter(1)
    async with limiter.slot():
        waiter = asyncio.create_task(_hold(limiter))
        await asyncio.sleep(0.01)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
    assert limiter.in_flight == 0
    async with asyncio.timeout(1):
        async with limiter.slot():
            assert limiter.in_flight == 1


async def _hold(limiter: AdaptiveLimiter) -> None:
    async with limiter.slot():
        await asyncio.sleep(10)


def test_throttle_halves_once_per_burst_and_success_grows_back_slowly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The limiter's own clock, moved by hand: a busy machine must not split the burst in two.
    now = [100.0]
    monkeypatch.setattr(limits, "time", SimpleNamespace(monotonic=lambda: now[0]))
    limiter = AdaptiveLimiter(16, minimum=2, increase_every=4, cooldown=0.05)

    for _ in range(10):  # a burst of 429s within the cooldown is one signal
        limiter.on_throttle()
    assert limiter.limit == 8

    for expected in (4, 2, 2):  # never below the minimum
        now[0] += 0.06
        limiter.on_throttle()
        assert limiter.limit == expected

    for _ in range(3):
        limiter.on_success()
    assert limiter.limit == 2
    limiter.on_success()
    assert limiter.limit == 3
    for _ in range(4 * 20):
        limiter.on_success()
    assert limiter.limit == 16  # never above the maximum


def test_a_throttle_restarts_the_run_of_successes() -> None:
    limiter = AdaptiveLimiter(8, increase_every=3)
    limiter.on_throttle()
    assert limiter.limit == 4
    limiter.on_success()
    limiter.on_success()
    limiter.on_throttle()  # inside the cooldown: no halving, but the run is broken
    assert limiter.limit == 4
    limiter.on_success()
    limiter.on_success()
    assert limiter.limit == 4
    limiter.on_success()
    assert limiter.limit == 5


async def test_a_raised_limit_wakes_waiters() -> None:
    limiter = AdaptiveLimiter(2, increase_every=1)
    limiter.on_throttle()
    assert limiter.limit == 1
    entered = asyncio.Event()
    async with limiter.slot():

        async def second() -> None:
            async with limiter.slot():
                entered.set()

        task = asyncio.create_task(second())
        await asyncio.sleep(0.01)
        assert not entered.is_set()
        limiter.on_success()
        await asyncio.wait_for(entered.wait(), 1)
    await task


def test_limiter_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        AdaptiveLimiter(0)
    with pytest.raises(ValueError):
        AdaptiveLimiter(4, minimum=5)


def _never_ahead_of_the_cap(released: list[tuple[float, int]], started: float, cap: int) -> None:
    """Each consume returned no sooner than the cap allows for all the bytes up to it.

    Only lower bounds on real instants: a busy machine makes returns later, never earlier, so
    this cannot fail by chance; a limiter that let a burst through first and slept later
    (right on average, too fast at first) fails it.
    """
    total = 0
    for at, n in sorted(released):
        total += n
        assert at - started >= total / cap * 0.98, (total, at - started)


async def test_rate_limiter_holds_the_cap() -> None:
    rate = RateLimiter(4_000_000)
    released: list[tuple[float, int]] = []
    started = time.monotonic()
    for _ in range(4):
        await rate.consume(500_000)
        released.append((time.monotonic(), 500_000))
    assert time.monotonic() - started >= 0.45
    _never_ahead_of_the_cap(released, started, 4_000_000)


async def test_rate_limiter_shares_the_cap_between_consumers() -> None:
    rate = RateLimiter(4_000_000)
    released: list[tuple[float, int]] = []

    async def consumer() -> None:
        for _ in range(2):
            await rate.consume(250_000)
            released.append((time.monotonic(), 250_000))

    started = time.monotonic()
    await asyncio.gather(*(consumer() for _ in range(4)))
    assert time.monotonic() - started >= 0.45
    _never_ahead_of_the_cap(released, started, 4_000_000)


def test_unlimited_rate_never_waits() -> None:
    # A terabyte at any cap would take hours; without one, consume never even suspends: the
    # coroutine finishes on its first step, however busy the machine.
    step = RateLimiter(None).consume(10**12)
    with pytest.raises(StopIteration):
        step.send(None)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20M", 20_000_000),
        ("20m", 20_000_000),
        ("20MB", 20_000_000),
        ("20MB/s", 20_000_000),
        ("500k", 500_000),
        ("1.5G", 1_500_000_000),
        ("1000", 1000),
        ("2MiB", 2 * 1024 * 1024),
        (" 3 KiB/s ", 3 * 1024),
    ],
)
def test_parse_rate(text: str, expected: float) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "fast", "20X", "-5M", "0", "M20", "1.2.3M"])
def test_parse_rate_refuses_with_a_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="rate"):
        parse_rate(text)
