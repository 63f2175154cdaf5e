"""The web page's views at a studio's size, on both databases: the jobs list shows live and
recent jobs and pages through the rest; a job's page reads one page of photos (failed first)
and grouped counts, never every photo; every live state has a progress."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update

from orchestrator.service import job_pages
from orchestrator.service import jobs as job_views
from orchestrator.spec import JobSpec
from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import NewJob, NewPhoto, PhaseDone, PhaseFailed, Store


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _job(
    store: Store, state: str, *, photos: int = 2, minutes_ago: int = 0, spec: JobSpec | None = None
) -> str:
    job_id = uuid.uuid4().hex
    await store.create_job(
        NewJob(
            id=job_id,
            name=f"shoot-{job_id[:6]}",
            source=f"/shoots/{job_id}",
            edited_dir="/e",
            exported_dir="/x",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec=(spec or JobSpec(export=True)).to_stored(),
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(f"IMG_{n:04d}.jpg", f"IMG_{n:04d}.jpg", 1000, 1) for n in range(photos)],
    )
    async with store.engine.begin() as conn:
        await conn.execute(
            update(Job)
            .where(Job.id == job_id)
            .values(state=state, created_at=utcnow() - timedelta(minutes=minutes_ago))
        )
    return job_id


async def test_the_list_shows_live_and_recent_jobs_and_pages_through_the_rest(
    store: Store,
) -> None:
    finished = [await _job(store, "completed", minutes_ago=200 - n) for n in range(60)]
    live = [await _job(store, "editing", minutes_ago=300 - n) for n in range(3)]
    first = await job_pages.job_list(store)
    shown = [row.summary["id"] for row in first.rows]
    assert set(live) <= set(shown)
    assert len(shown) == len(live) + job_views.RECENT_FINISHED
    assert (first.live, first.finished) == (3, 60)
    assert first.next is not None, "no link to older jobs"

    seen: list[str] = []
    cursor = None
    while True:
        page = await job_pages.job_list(store, show="all", cursor=cursor)
        assert len(page.rows) <= job_pages.LIST_PAGE
        seen += [row.summary["id"] for row in page.rows]
        if page.next is None:
            break
        cursor = page.next
    assert seen == [*reversed(finished), *reversed(live)]  # newest first, each once
    only_live = await job_pages.job_list(store, show="live")
    assert [row.summary["id"] for row in only_live.rows] == list(reversed(live))
    with pytest.raises(job_pages.BadFilter):
        await job_pages.job_list(store, show="<script>")


async def test_every_live_state_has_a_progress(store: Store) -> None:
    live = [s for s in JobState if s not in TERMINAL_STATES]
    ids = {await _job(store, state): state for state in live}
    rows = (await job_pages.job_list(store, show="live")).rows
    assert {row.summary["id"] for row in rows} == set(ids)
    blank = [ids[row.summary["id"]] for row in rows if row.progress is None and not row.waiting]
    assert blank == []
    reviewing = next(row for row in rows if row.summary["state"] == "reviewing")
    assert reviewing.progress is not None and reviewing.progress.counted == "decided"


async def _photo_ids(store: Store, job_id: str) -> list[int]:
    return [photo.id for photo in await store.photos(job_id)]


async def test_a_big_jobs_page_reads_one_page_of_photos_failed_first(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    job_id = await _job(store, "downloading_edits", photos=250, spec=JobSpec())
    ids = await _photo_ids(store, job_id)
    lease = await store.claim(job_id, "test", 60)
    failed = ids[10:13]
    for photo_id in ids:
        await store.checkpoint(lease, photo_id, PhaseDone("upload"))
    for photo_id in failed:
        await store.checkpoint(lease, photo_id, PhaseFailed("edit", "<b>md5 mismatch</b>"))

    async def every_photo(*_: Any) -> None:
        raise AssertionError("the job's page read every photo")

    monkeypatch.setattr(Store, "photos", every_photo)
    page = await job_pages.job_page(store, job_id)
    assert page.showing == "failed" and page.failed == 3
    assert [photo.id for photo in page.photos] == failed
    assert page.next_after is None
    assert page.view.photos == 250 and page.view.done == {"upload": 250}
    assert page.counts["upload"].done == 250 and page.counts["edit"].failed == 3
    # Asked for no export, tag nor delivery: the page has no column for them.
    assert page.phases == ["upload", "edit"]

    seen: list[int] = []
    after = None
    while True:
        page = await job_pages.job_page(store, job_id, show="all", after=after)
        assert len(page.photos) <= job_pages.PHOTOS_PAGE
        seen += [photo.id for photo in page.photos]
        if page.next_after is None:
            break
        after = page.next_after
    assert seen == ids


async def test_one_photo_is_read_alone(store: Store) -> None:
    job_id = await _job(store, "uploading", photos=3)
    other = await _job(store, "uploading", photos=1)
    [first, *_] = await _photo_ids(store, job_id)
    [foreign] = await _photo_ids(store, other)
    photo = await store.photo(job_id, first)
    assert photo is not None and photo.rel_path == "IMG_0000.jpg"
    assert await store.photo(job_id, foreign) is None
