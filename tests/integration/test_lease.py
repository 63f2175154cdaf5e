"""Borrowing a job's lease for an operator's action (`workflow/lease.py`), on both databases.

The borrower waits a bounded while for a holder to let go, then refuses; keeps the lease alive
through an action longer than the lease; gives it back however the action ends; and, like the
engine (`test_heartbeat.py`), stops the action once its lease is lost.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from orchestrator.store.queries import Lease, LeaseHeld, StaleLease, Store
from orchestrator.workflow import lease as leases
from orchestrator.workflow.lease import borrow
from tests.store_support import stored_job

TTL = 0.9


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


class _CountingClaims(Store):
    """A store that counts the claims made through it."""

    def __init__(self, store: Store) -> None:
        super().__init__(store.engine)
        self.claims = 0

    async def claim(self, job_id: str, owner: str, ttl: float) -> Lease:
        self.claims += 1
        return await super().claim(job_id, owner, ttl)


class _Renewals(Store):
    """A store whose renewals fail: the database down (`raises`), or the lease taken over."""

    def __init__(self, store: Store, *, raises: bool) -> None:
        super().__init__(store.engine)
        self.raises = raises
        self.renewals = 0

    async def renew(self, lease: Lease, ttl: float) -> bool:
        self.renewals += 1
        if self.raises:
            raise OSError("connection refused")
        return False


async def _new_job(store: Store) -> str:
    return await stored_job(store)


async def test_a_live_lease_is_waited_for_a_bounded_while_then_refused(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(leases, "FIRST_CLAIM_WAIT", 0.02)
    job_id = await _new_job(store)
    await store.claim(job_id, "a-daemon", 60)
    counting = _CountingClaims(store)
    started = time.monotonic()
    with pytest.raises(LeaseHeld, match="is being driven by a-daemon"):
        async with borrow(counting, job_id, purpose="review", ttl=TTL):
            pytest.fail("the action ran without the lease")
    assert counting.claims == leases.CLAIM_ATTEMPTS
    waits = sum(0.02 * 2**i for i in range(leases.CLAIM_ATTEMPTS - 1))
    assert time.monotonic() - started >= waits
    assert (await store.get_job(job_id)).lease_owner == "a-daemon"


async def test_a_lease_let_go_during_the_wait_is_taken(store: Store) -> None:
    job_id = await _new_job(store)
    held = await store.claim(job_id, "a-daemon", 60)

    async def let_go() -> None:
        await asyncio.sleep(0.2)
        await store.release(held)

    releasing = asyncio.create_task(let_go())
    async with borrow(store, job_id, purpose="review", ttl=TTL) as lease:
        assert (await store.get_job(job_id)).lease_owner == lease.owner
        assert lease.owner.endswith(":review") and lease.epoch == held.epoch + 1
    await releasing


async def test_the_lease_is_renewed_through_a_long_action_and_given_back(store: Store) -> None:
    job_id = await _new_job(store)
    async with borrow(store, job_id, purpose="deliver", ttl=TTL) as lease:
        # Three lease lives later, nobody else may take the job: the heartbeat renewed it.
        await asyncio.sleep(3 * TTL)
        with pytest.raises(LeaseHeld):
            await store.claim(job_id, "a-daemon", 60)
        assert await store.renew(lease, TTL)
    job = await store.get_job(job_id)
    assert job.lease_owner is None and job.lease_expires_at is None


@pytest.mark.parametrize("error", [ValueError("refused"), asyncio.CancelledError()])
async def test_the_lease_is_given_back_when_the_action_fails_or_is_cancelled(
    store: Store, error: BaseException
) -> None:
    job_id = await _new_job(store)
    with pytest.raises(type(error)):
        async with borrow(store, job_id, purpose="keywords", ttl=TTL):
            raise error
    assert (await store.get_job(job_id)).lease_owner is None
    lease = await store.claim(job_id, "a-daemon", 60)
    assert lease.owner == "a-daemon"


@pytest.mark.parametrize("down", [False, True], ids=["taken-over", "database-down"])
async def test_a_lost_lease_stops_the_action_like_the_engine(store: Store, down: bool) -> None:
    job_id = await _new_job(store)
    failing = _Renewals(store, raises=down)
    finished = False
    started = time.monotonic()
    with pytest.raises(StaleLease, match="lost the lease"):
        async with borrow(failing, job_id, purpose="deliver", ttl=TTL):
            await asyncio.sleep(3600)
            finished = True
    stopped_after = time.monotonic() - started
    assert not finished and failing.renewals >= 1
    # Taken over: stopped at the first renewal. Database down: only once the lease ran out.
    assert stopped_after >= (TTL - TTL / 3 if down else TTL / 3) - 0.05
    assert stopped_after < 3 * TTL
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]
