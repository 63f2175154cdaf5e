"""What the jobs list and a job's page say about a job, on both databases, as `status` says
it: refused hot-folder drops among the jobs, "stopped" or "running (by whom)" beside the state,
no old red error on a job that completed, and the real paths of a job's outputs (mirrored
subfolders, `--prefix-subfolders` names, `--output` folder)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import update

from orchestrator.service import job_pages
from orchestrator.spec import JobSpec, OutputLayout
from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, NewPhoto, PhaseDone, Store


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _job(
    store: Store, name: str, state: str, *, spec: JobSpec | None = None, **values: object
) -> str:
    job_id = uuid.uuid4().hex
    await store.create_job(
        NewJob(
            id=job_id,
            name=name,
            source=f"/shoots/{name}",
            edited_dir=f"/out/{name}/edited",
            exported_dir=f"/out/{name}/exported",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec=(spec or JobSpec(export=True)).to_stored(),
            project_name=f"orchestrator-{job_id}",
        ),
        # Sent with --prefix-subfolders: its name in the job carries its folder.
        [NewPhoto("Ceremony/IMG_0001.jpg", "Ceremony_IMG_0001.jpg", 1000, 1)],
    )
    async with store.engine.begin() as conn:
        await conn.execute(update(Job).where(Job.id == job_id).values(state=state, **values))
    return job_id


async def test_the_list_says_who_drives_each_job_and_lists_refused_drops(store: Store) -> None:
    running = await _job(store, "running", "uploading")
    await store.claim(running, "studio-mac:4242:ab12", 600)
    stopped = await _job(store, "stopped", "uploading")
    done = await _job(store, "done", "completed", last_error="imgix answered 503 (retried)")
    failed = await _job(store, "failed", "failed", last_error="the disk is full")
    await store.record_refusal("/hot/odd-drop", "odd-drop holds no photo this tool can send")

    listing = await job_pages.job_list(store)
    rows = {str(row.summary["id"]): row for row in listing.rows}
    assert rows[running].activity == "running (by studio-mac:4242:ab12)"
    assert rows[stopped].activity == "stopped"
    assert rows[done].activity == "" and rows[done].error == ""
    assert rows[failed].error == "the disk is full"
    [refused] = listing.refused
    assert refused["source"] == "/hot/odd-drop" and "no photo" in refused["last_error"]
    # Refusals are listed once, with the first page of live and recent jobs.
    assert (await job_pages.job_list(store, show="all")).refused == []


async def test_the_job_page_points_at_the_outputs_where_they_are(store: Store) -> None:
    layout = OutputLayout(subfolders=True)
    job_id = await _job(store, "wedding", "completed", spec=JobSpec(export=True, outputs=layout))
    flat = await _job(
        store,
        "flat",
        "completed",
        spec=JobSpec(export=True, outputs=OutputLayout(subfolders=False)),
    )
    for one in (job_id, flat):
        [photo] = await store.photos(one)
        lease = await store.claim(one, "test", 60)
        async with store.photo_writer(lease) as writer:
            # Sent as "Ceremony_IMG_0001.jpg" (--prefix-subfolders): Imagen names it so.
            await writer.write(
                [(photo.id, PhaseDone("export", output="Ceremony_IMG_0001.jpg", size=9, md5="0"))]
            )
        await store.release(lease)

    page = await job_pages.job_page(store, job_id)
    [photo] = page.photos
    assert page.outputs[photo.id]["export"] == "/out/wedding/exported/Ceremony/IMG_0001.jpg"
    flat_page = await job_pages.job_page(store, flat)
    assert flat_page.outputs[flat_page.photos[0].id]["export"] == (
        "/out/flat/exported/Ceremony_IMG_0001.jpg"
    )
