"""Group-committed photo checkpoints: shared transactions, all or nothing, fenced by the lease."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import (
    NewJob,
    NewPhoto,
    PhaseDone,
    PhotoWriter,
    SourceCheckpoint,
    StaleLease,
    Store,
)
from orchestrator.workflow.checkpoints import photo_checkpoints


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    opened = Store.open(migrated_db_url)
    try:
        yield opened
    finally:
        await opened.close()


async def _job(store: Store, photos: int = 20) -> str:
    job_id = f"{photos:02d}" + "c" * 30
    await store.create_job(
        NewJob(
            id=job_id,
            name="shoot",
            source="/shoot",
            edited_dir="/shoot/edited",
            exported_dir="/shoot/exported",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec={"version": 1},
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(f"IMG_{i}.jpg", f"IMG_{i}.jpg", 10, 1) for i in range(photos)],
    )
    return job_id


async def test_photos_finishing_together_share_a_commit(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await _job(store)
    lease = await store.claim(job_id, "w1", 60)
    batches: list[int] = []
    write = PhotoWriter.write

    async def counted(self: PhotoWriter, updates: Any) -> None:
        batches.append(len(updates))
        await write(self, updates)

    monkeypatch.setattr(PhotoWriter, "write", counted)
    photos = await store.photos(job_id)
    async with photo_checkpoints(store, lease) as checkpoints:
        await asyncio.gather(*(checkpoints.commit(p.id, PhaseDone("upload")) for p in photos))
    assert sum(batches) == len(photos) and len(batches) < len(photos)
    assert all(p.done("upload") for p in await store.photos(job_id))


async def test_a_worker_that_lost_the_lease_commits_nothing(store: Store) -> None:
    job_id = await _job(store)
    old = await store.claim(job_id, "w1", 60)
    photos = await store.photos(job_id)
    async with photo_checkpoints(store, old) as checkpoints:
        await checkpoints.commit(photos[0].id, PhaseDone("upload"))
        async with store.engine.begin() as conn:
            await conn.execute(
                update(Job)
                .where(Job.id == job_id)
                .values(lease_expires_at=utcnow() - timedelta(seconds=1))
            )
        await store.claim(job_id, "w2", 60)
        with pytest.raises(StaleLease):
            await checkpoints.commit(photos[1].id, PhaseDone("upload"))
        with pytest.raises(StaleLease):  # and every later one fails at once
            checkpoints.save(photos[2].id, PhaseDone("upload"))
    assert [p.done("upload") for p in await store.photos(job_id)][:3] == [True, False, False]


async def test_a_batch_is_written_whole_or_not_at_all(store: Store) -> None:
    job_id = await _job(store, photos=3)
    other = await _job(store, photos=2)
    lease = await store.claim(job_id, "w1", 60)
    mine = await store.photos(job_id)
    foreign = (await store.photos(other))[0]
    async with store.photo_writer(lease) as writer:
        with pytest.raises(LookupError):
            await writer.write(
                [(mine[0].id, PhaseDone("upload")), (foreign.id, PhaseDone("upload"))]
            )
    assert all(not p.done("upload") for p in await store.photos(job_id))
    assert all(not p.done("upload") for p in await store.photos(other))


async def test_checkpoints_queued_without_waiting_are_committed_on_the_way_out(
    store: Store,
) -> None:
    job_id = await _job(store, photos=5)
    lease = await store.claim(job_id, "w1", 60)
    photos = await store.photos(job_id)
    async with photo_checkpoints(store, lease) as checkpoints:
        for photo in photos:
            checkpoints.save(photo.id, SourceCheckpoint(md5="ab" * 16, size=10, mtime_ns=1))
    assert {p.md5 for p in await store.photos(job_id)} == {"ab" * 16}
