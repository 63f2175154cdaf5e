"""The store's guarded statements on both databases: state checks, fencing, leases."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import update

from orchestrator.service import jobs as job_views
from orchestrator.states import IllegalTransition, JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import (
    LeaseHeld,
    NewJob,
    NewPhoto,
    PhaseDone,
    PhaseFailed,
    StaleLease,
    StateConflict,
    Store,
)
from orchestrator.workflow.journey import PIPELINE


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


move = PIPELINE.transitions.move


async def _new_job(store: Store, photos: int = 2) -> str:
    job_id = uuid.uuid4().hex
    await store.create_job(
        NewJob(
            id=job_id,
            name="shoot",
            source="/shoots/a",
            edited_dir="/shoots/a/edited",
            exported_dir="/shoots/a/exported",
            image_type="RAW",
            profile_key=1001,
            profile_name="P",
            spec={"version": 1, "export": True},
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(f"IMG_{i}.CR2", f"IMG_{i}.CR2", 100 + i, 1) for i in range(photos)],
    )
    return job_id


async def test_transition_is_guarded_by_the_expected_state(store: Store) -> None:
    job_id = await _new_job(store)
    lease = await store.claim(job_id, "w1", 60)
    await store.record_project(
        lease, move(JobState.QUEUED, JobState.PROJECT_CREATED), project_uuid="p1", message=""
    )
    with pytest.raises(StateConflict, match="is project_created, expected queued"):
        await store.advance(lease, move(JobState.QUEUED, JobState.PROJECT_CREATED))
    with pytest.raises(IllegalTransition):
        await store.advance(lease, move(JobState.PROJECT_CREATED, JobState.EDITING))
    job = await store.get_job(job_id)
    assert (job.state, job.project_uuid) == ("project_created", "p1")
    kinds = [(e.from_state, e.to_state) for e in await store.events(job_id)]
    assert kinds == [(None, "queued"), ("queued", "project_created")]


async def test_a_worker_whose_lease_was_taken_over_cannot_write(store: Store) -> None:
    job_id = await _new_job(store)
    old = await store.claim(job_id, "w1", 60)
    with pytest.raises(LeaseHeld):
        await store.claim(job_id, "w2", 60)
    # w1 stalls past its lease; w2 takes over with a newer epoch.
    async with store.engine.begin() as conn:
        await conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    new = await store.claim(job_id, "w2", 60)
    assert new.epoch == old.epoch + 1
    with pytest.raises(StaleLease):
        await store.advance(old, move(JobState.QUEUED, JobState.PROJECT_CREATED))
    photo = (await store.photos(job_id))[0]
    with pytest.raises(StaleLease):
        await store.checkpoint(old, photo.id, PhaseDone("upload"))
    assert not await store.renew(old, 60)
    await store.release(old)  # a no-op: must not free w2's lease
    assert (await store.get_job(job_id)).lease_owner == "w2"
    await store.advance(new, move(JobState.QUEUED, JobState.PROJECT_CREATED))
    assert not (await store.photos(job_id))[0].done("upload")


async def test_photo_checkpoints_and_failures(store: Store) -> None:
    job_id = await _new_job(store)
    lease = await store.claim(job_id, "w1", 60)
    first, second = await store.photos(job_id)
    await store.checkpoint(lease, first.id, PhaseDone("upload"))
    await store.checkpoint(lease, second.id, PhaseFailed("upload", "boom"))
    await store.checkpoint(
        lease, first.id, PhaseDone("edit", output="IMG_0.xmp", size=5, md5="ab" * 16)
    )
    first, second = await store.photos(job_id)
    assert first.done("upload") and first.phases["edit"].output == "IMG_0.xmp"
    assert second.failures == [("upload", "boom")]
    with pytest.raises(LookupError):
        await store.checkpoint(lease, 10_000_000, PhaseDone("upload"))


async def test_retry_returns_a_failed_job_to_where_it_stopped(store: Store) -> None:
    job_id = await _new_job(store)
    lease = await store.claim(job_id, "w1", 60)
    for current, new in [
        (JobState.QUEUED, JobState.PROJECT_CREATED),
        (JobState.PROJECT_CREATED, JobState.UPLOADING),
    ]:
        await store.advance(lease, move(current, new))
    photo = (await store.photos(job_id))[0]
    await store.checkpoint(lease, photo.id, PhaseFailed("upload", "disk error"))
    await store.fail(
        lease,
        move(JobState.UPLOADING, JobState.FAILED),
        reason="1 failed",
        back_to=JobState.UPLOADING,
    )
    job = await job_views.retry(store, job_id)
    assert (job.state, job.last_error, job.attempt_count) == ("uploading", None, 1)
    assert all(not p.failures for p in await store.photos(job_id))
    with pytest.raises(StateConflict, match="not failed"):
        await job_views.retry(store, job_id)


async def test_cancel_is_immediate_when_nobody_drives_the_job(store: Store) -> None:
    idle = await _new_job(store)
    assert (await job_views.cancel(store, idle)).state == "cancelled"
    driven = await _new_job(store)
    await store.claim(driven, "w1", 60)
    job = await job_views.cancel(store, driven)
    assert job.state == "queued" and job.cancel_requested


async def test_resolve_job_by_prefix(store: Store) -> None:
    job_id = await _new_job(store)
    assert (await store.resolve_job(job_id[:6])).id == job_id
    assert (await store.resolve_job(job_id.upper())).id == job_id
    with pytest.raises(LookupError, match="too short"):
        await store.resolve_job("ab")
    with pytest.raises(LookupError, match="no job"):
        await store.resolve_job("zzzzzz")
    listed = await store.list_jobs()
    assert [(j.id, n) for j, n in listed] == [(job_id, 2)]
