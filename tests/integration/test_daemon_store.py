"""The daemons' statements on both databases: claiming due jobs, the inbox, waking, NOTIFY."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from orchestrator.service import jobs as job_views
from orchestrator.service.wakeups import Wakeups
from orchestrator.states import JobState
from orchestrator.store.inbox import Verdict, deliver_callback
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import utcnow
from orchestrator.store.queries import Lease, StaleLease, Store
from orchestrator.store.scheduling import (
    claim_due_jobs,
    next_due_in,
    planning_lock,
    take_back_stranded,
    wake_if_called_back,
)
from orchestrator.workflow.journey import PIPELINE
from tests.store_support import stored_job

move = PIPELINE.transitions.move

PROJECT = "p-0001"


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _job(store: Store, *, daemon: bool = True, **values: Any) -> str:
    return await stored_job(store, daemon=daemon, **values)


async def test_only_due_daemon_jobs_without_a_live_lease_are_claimed(store: Store) -> None:
    now = utcnow()
    due = await _job(store)
    await _job(store, daemon=False)  # a `run` job: its command drives it
    await _job(store, wake_at=now + timedelta(minutes=5))  # waiting for Imagen
    await _job(store, state=JobState.COMPLETED.value)
    await _job(store, lease_owner="other", lease_expires_at=now + timedelta(minutes=1))
    expired = await _job(
        store,
        lease_owner="dead",
        lease_expires_at=now - timedelta(seconds=1),
        lease_epoch=4,
        wake_at=now - timedelta(seconds=2),
    )

    claims = await claim_due_jobs(store, "me", 30, limit=10)
    assert {c.lease.job_id for c in claims} == {due, expired}
    by_id = {c.lease.job_id: c for c in claims}
    assert by_id[expired].previous_owner == "dead" and by_id[expired].lease.epoch == 5
    assert by_id[due].previous_owner is None
    assert [e.kind for e in await store.events(expired)][-1] == "lease"
    assert await claim_due_jobs(store, "me", 30, limit=10) == []
    # The fenced write of the worker that died is refused; the claimer's goes through.
    with pytest.raises(StaleLease):
        await store.advance(
            Lease(expired, "dead", 4), move(JobState.QUEUED, JobState.PROJECT_CREATED)
        )
    await store.advance(by_id[expired].lease, move(JobState.QUEUED, JobState.PROJECT_CREATED))


async def test_claims_respect_the_limit_and_take_jobs_under_way_first(store: Store) -> None:
    now = utcnow()
    new = [await _job(store) for _ in range(2)]  # queued before any of the others woke
    woken = [await _job(store, wake_at=now - timedelta(seconds=10 - n)) for n in range(3)]
    first = await claim_due_jobs(store, "me", 30, limit=2)
    assert [c.lease.job_id for c in first] == woken[:2]
    rest = await claim_due_jobs(store, "me", 30, limit=10)
    assert [c.lease.job_id for c in rest] == [woken[2], *new]


async def test_a_retried_daemon_job_goes_back_to_the_daemons(store: Store) -> None:
    job_id = await _job(store)
    [claim] = await claim_due_jobs(store, "me", 30, limit=1)
    await store.fail(
        claim.lease, move(JobState.QUEUED, JobState.FAILED), reason="boom", back_to=JobState.QUEUED
    )
    await store.release(claim.lease)
    assert await claim_due_jobs(store, "me", 30, limit=1) == []
    await job_views.retry(store, job_id)  # `orchestrator retry --reset-only`
    [again] = await claim_due_jobs(store, "me", 30, limit=1)
    assert again.lease.job_id == job_id and again.lease.epoch == claim.lease.epoch + 1


async def test_concurrent_claimers_never_share_a_job(store: Store) -> None:
    ids = {await _job(store) for _ in range(24)}

    async def claimer(name: str) -> list[str]:
        taken: list[str] = []
        while batch := await claim_due_jobs(store, name, 30, limit=3):
            taken += [c.lease.job_id for c in batch]
        return taken

    results = await asyncio.gather(*(claimer(f"w{n}") for n in range(4)))
    everything = [job_id for taken in results for job_id in taken]
    assert sorted(everything) == sorted(ids)  # each job exactly once


async def _callback(
    store: Store, secret_hash: str = "ab" * 32, project: str = PROJECT, status: str = "completed"
) -> Verdict:
    delivery = await deliver_callback(
        store, secret_hash, project_uuid=project, action="edit", status=status
    )
    return delivery.verdict


async def test_the_inbox_keeps_each_callback_once_and_wakes_the_job(store: Store) -> None:
    job_id = await _job(
        store,
        state=JobState.EDITING.value,
        project_uuid=PROJECT,
        callback_secret_hash="ab" * 32,
        wake_at=utcnow() + timedelta(hours=1),
    )
    assert await _callback(store, "cd" * 32) is Verdict.UNKNOWN_SECRET
    assert await _callback(store, project="p-other") is Verdict.WRONG_PROJECT
    assert (await store.get_job(job_id)).wake_at > utcnow()  # refused ones change nothing

    assert await _callback(store) is Verdict.ACCEPTED
    assert await _callback(store) is Verdict.DUPLICATE
    job = await store.get_job(job_id)
    assert job.wake_at is not None and job.wake_at <= utcnow()
    assert job.state == JobState.EDITING.value  # a callback never moves the state
    assert [e.kind for e in await store.events(job_id)].count("callback") == 1
    assert await _callback(store, status="failed") is Verdict.ACCEPTED  # other news is news


async def test_a_callback_during_a_drive_wakes_the_job_when_the_drive_ends(store: Store) -> None:
    job_id = await _job(
        store, state=JobState.EDITING.value, project_uuid=PROJECT, callback_secret_hash="ab" * 32
    )
    [claim] = await claim_due_jobs(store, "me", 30, limit=1)
    # The drive polled ("in progress"); the callback lands; then the drive sets a later wake.
    assert await _callback(store) is Verdict.ACCEPTED
    await store.sleep_until(claim.lease, JobState.EDITING, utcnow() + timedelta(minutes=10))
    await store.release(claim.lease)
    assert await wake_if_called_back(store, job_id)
    assert await claim_due_jobs(store, "me", 30, limit=1)
    # Claiming consumed the callback: the next drive end finds nothing new.
    assert not await wake_if_called_back(store, job_id)


async def test_next_due_in_sees_wake_times_and_lease_expiries(store: Store) -> None:
    now = utcnow()
    assert await next_due_in(store, "me") is None
    await _job(store, wake_at=now + timedelta(seconds=30))
    expiry = now + timedelta(seconds=20)
    await _job(
        store, lease_owner="other", lease_expires_at=expiry, wake_at=now - timedelta(seconds=5)
    )
    await _job(store, lease_owner="me", lease_expires_at=now + timedelta(seconds=1))
    await _job(store, daemon=False)
    # The other daemon's lease expiry (20 s), not the wake-up (30 s) nor the unqueued job (0 s).
    due = await next_due_in(store, "me")
    assert due is not None and 10 < due <= 20


@contextlib.asynccontextmanager
async def _listening(pg_url: str) -> AsyncIterator[tuple[Store, Wakeups]]:
    """A store on the migrated database and a daemon's NOTIFY listener, already connected."""
    await upgrade(pg_url)
    store = Store.open(pg_url)
    wakeups = Wakeups()
    listener = asyncio.create_task(wakeups.listen(pg_url))
    try:
        await asyncio.wait_for(wakeups.wait(5), 6)  # the listener wakes once when it connects
        wakeups.clear()
        yield store, wakeups
    finally:
        listener.cancel()
        await store.close()


@pytest.mark.postgres
async def test_notify_wakes_a_listener_in_another_connection(pg_url: str) -> None:
    async with _listening(pg_url) as (store, wakeups):
        await _job(
            store,
            daemon=False,
            state=JobState.EDITING.value,
            project_uuid=PROJECT,
            callback_secret_hash="ab" * 32,
        )
        started = asyncio.get_running_loop().time()
        assert await _callback(store) is Verdict.ACCEPTED
        await wakeups.wait(2)
        assert asyncio.get_running_loop().time() - started < 1.0


@pytest.mark.postgres
async def test_a_retry_wakes_the_listening_daemons(pg_url: str) -> None:
    async with _listening(pg_url) as (store, wakeups):
        # Queued for the daemons without the NOTIFY that queueing sends: only the retry's counts.
        job_id = await _job(
            store,
            daemon=False,
            queued_for_daemon=True,
            state=JobState.FAILED.value,
            state_before_failure=JobState.EDITING.value,
        )
        await job_views.retry(store, job_id[:8])  # `orchestrator retry --reset-only`
        started = asyncio.get_running_loop().time()
        await wakeups.wait(30)  # an idle daemon would sleep this long without the NOTIFY
        assert asyncio.get_running_loop().time() - started < 10


@pytest.mark.postgres
async def test_planning_one_folder_is_serialized_across_connections(pg_url: str) -> None:
    await upgrade(pg_url)
    store = Store.open(pg_url)
    order: list[str] = []

    async def plan(name: str) -> None:
        async with planning_lock(store, "/shoots/same"):
            order.append(f"{name} in")
            await asyncio.sleep(0.2)
            order.append(f"{name} out")

    try:
        await asyncio.gather(plan("a"), plan("b"))
    finally:
        await store.close()
    assert order in (["a in", "a out", "b in", "b out"], ["b in", "b out", "a in", "a out"])


async def test_taking_back_stranded_leases_touches_only_this_daemons_idle_ones(
    store: Store,
) -> None:
    """After an outage a daemon gives back the leases in its name that none of its drives holds;
    a drive of its own still running and every other daemon's lease are left alone."""
    later = utcnow() + timedelta(minutes=10)
    stranded = await _job(store, lease_owner="me", lease_expires_at=later, lease_epoch=3)
    driving = await _job(store, lease_owner="me", lease_expires_at=later, lease_epoch=5)
    others = await _job(store, lease_owner="other", lease_expires_at=later, lease_epoch=7)

    assert await take_back_stranded(store, "me", {driving}) == [stranded]
    jobs = {job_id: await store.get_job(job_id) for job_id in (stranded, driving, others)}
    assert (jobs[stranded].lease_owner, jobs[stranded].lease_epoch) == (None, 3)
    assert (jobs[driving].lease_owner, jobs[driving].lease_epoch) == ("me", 5)
    assert (jobs[others].lease_owner, jobs[others].lease_epoch) == ("other", 7)
    # Free again, so due at once; the claim bumps the epoch past any write of the old drive.
    [claim] = await claim_due_jobs(store, "me", 30, limit=10)
    assert (claim.lease.job_id, claim.lease.epoch, claim.previous_owner) == (stranded, 4, None)
    with pytest.raises(StaleLease):
        await store.advance(
            Lease(stranded, "me", 3), move(JobState.QUEUED, JobState.PROJECT_CREATED)
        )
