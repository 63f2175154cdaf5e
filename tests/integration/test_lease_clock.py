"""Leases follow the database's clock, not the clock of the machine that writes them.

Daemons on several machines share one Postgres; a machine whose clock runs ahead must not take
a live lease, and one whose clock runs behind must not renew a lease into the past. Each test
skews this process's clock (the `utcnow` the store modules read) by five minutes either way and
shows the lease judged as the database sees it, on both databases.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta

import pytest

from orchestrator.store import models, queries, scheduling
from orchestrator.store.queries import LeaseHeld, Store
from orchestrator.store.scheduling import claim_due_jobs, next_due_in
from tests.store_support import stored_job

SKEW = timedelta(minutes=5)


Skew = Callable[[timedelta], None]


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


@pytest.fixture
def skew(monkeypatch: pytest.MonkeyPatch) -> Iterator[Skew]:
    """Call with a timedelta to move this process's clock by it (the database's stays put)."""

    def set_skew(by: timedelta) -> None:
        def skewed() -> datetime:
            return models.utcnow() + by

        monkeypatch.setattr(queries, "utcnow", skewed)
        monkeypatch.setattr(scheduling, "utcnow", skewed)

    yield set_skew


async def _daemon_job(store: Store) -> str:
    return await stored_job(store, daemon=True)


async def test_a_daemon_whose_clock_runs_ahead_takes_no_live_lease(
    store: Store, skew: Skew
) -> None:
    job_id = await _daemon_job(store)
    await store.claim(job_id, "honest", ttl=60)
    skew(SKEW)
    with pytest.raises(LeaseHeld):
        await store.claim(job_id, "ahead", ttl=60)
    assert await claim_due_jobs(store, "ahead", 60, limit=10) == []
    assert (await store.get_job(job_id)).lease_owner == "honest"


async def test_a_renewal_by_a_clock_that_runs_behind_keeps_the_lease_live(
    store: Store, skew: Skew
) -> None:
    job_id = await _daemon_job(store)
    lease = await store.claim(job_id, "behind", ttl=60)
    skew(-SKEW)
    assert await store.renew(lease, ttl=60)
    skew(timedelta(0))
    with pytest.raises(LeaseHeld):
        await store.claim(job_id, "honest", ttl=60)
    assert await claim_due_jobs(store, "honest", 60, limit=10) == []


async def test_a_lease_expired_by_the_databases_clock_is_taken_whatever_the_taker_s_clock(
    store: Store, skew: Skew
) -> None:
    job_id = await _daemon_job(store)
    await store.claim(job_id, "gone", ttl=0.2)
    skew(-SKEW)
    # The lease expires by the database's clock within a moment; a taker whose clock runs
    # five minutes behind would wait those five minutes if it judged by its own.
    deadline = asyncio.get_running_loop().time() + 30
    while not (claims := await claim_due_jobs(store, "behind", 60, limit=10)):
        assert asyncio.get_running_loop().time() < deadline, "the expired lease was never taken"
        await asyncio.sleep(0.05)
    assert [claim.lease.job_id for claim in claims] == [job_id]
    assert claims[0].previous_owner == "gone"


async def test_the_next_wake_up_is_counted_on_the_databases_clock(store: Store, skew: Skew) -> None:
    job_id = await _daemon_job(store)
    await store.claim(job_id, "other", ttl=20)
    skew(SKEW)
    # A scheduler that ran ahead and counted on its own clock would find the expiry past and
    # look again at once, in a loop, for five minutes.
    due = await next_due_in(store, "me")
    assert due is not None and 10 < due <= 20
