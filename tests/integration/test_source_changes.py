"""Photos that change, vanish or appear between runs (and during one): found, reported, not mixed.

The job is stopped by a simulated crash at a chosen point (tests/engine_harness.py), the shoot
folder is changed the way a photographer would change it, and the next run (plan + drive) must
notice it. The rule: until every photo is uploaded, the job follows the folder (changed photos
are sent again, new ones join, vanished ones are left out); after that, Imagen edits what it
was sent, and changes are reported, never silently mixed in.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox import jpeg
from orchestrator.service.jobs import failed_photos
from orchestrator.spec import JobSpec
from orchestrator.transfer.manager import Transfers
from orchestrator.workflow.planning import RunRequest, plan_jobs
from tests.engine_harness import CrashPlan, Harness, harness
from tests.resume_support import make_crash_shoot


@pytest.fixture
async def h(migrated_db_url: str) -> AsyncIterator[Harness]:
    async with harness(migrated_db_url) as running:
        yield running


def new_version(path: Path, tag: str) -> str:
    """Rewrite the photo (another size), as an editor saving over it would; its new md5."""
    data = jpeg.with_comment(f"retouched {tag} {path.name}".encode())
    path.write_bytes(data)
    return hashlib.md5(data).hexdigest()


async def notes_of_next_run(h: Harness, shoot: Path) -> list[str]:
    """Plan the folder again as the next `orchestrator run` does; what it tells the user."""
    plan = await plan_jobs(
        h.store,
        h.client,
        RunRequest(source=shoot, profiles=["1001", "2001"], spec=JobSpec(export=True)),
    )
    return plan.notes


async def source_events(h: Harness, job_id: str) -> list[str]:
    return [e.message for e in await h.store.events(job_id) if e.kind == "source"]


def files_of(project: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    assert project is not None
    files: dict[str, dict[str, Any]] = project["files"]
    return files


async def test_a_photo_changed_after_its_upload_but_before_the_edit_is_sent_again(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_upload", 3))
    done = [p for p in await h.store.photos(job_id) if p.done("upload")]
    assert done, "no upload was checkpointed before the crash"
    photo = done[0]
    md5 = new_version(shoot / photo.rel_path, "v2")

    await notes_of_next_run(h, shoot)
    await h.drive(job_id)
    files = files_of(h.ledger_project(job_id))
    assert files[photo.file_name]["md5"] == md5  # the edit got the new version...
    assert files[photo.file_name]["uploads_completed"] == 2  # ...sent once more
    assert any(f"{photo.rel_path} changed" in m for m in await source_events(h, job_id))
    assert (await h.store.get_job(job_id)).state == "completed"


async def test_a_touched_but_unchanged_photo_is_not_sent_again(h: Harness, tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=1, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_upload", 3))
    photo = next(p for p in await h.store.photos(job_id) if p.done("upload"))
    later = (shoot / photo.rel_path).stat().st_mtime_ns + 5_000_000_000
    os.utime(shoot / photo.rel_path, ns=(later, later))

    await h.drive(job_id)
    assert files_of(h.ledger_project(job_id))[photo.file_name]["uploads_completed"] == 1
    assert await source_events(h, job_id) == []


async def test_new_and_vanished_photos_join_or_leave_the_job_until_the_uploads_end(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_crash_shoot(shoot, seed=2, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_checkpoint", 2))  # uploading, nothing sent
    (shoot / "IMG_0001.jpg").unlink()
    (shoot / "late").mkdir()
    new_version(shoot / "late" / "IMG_0100.jpg", "new")

    notes = await notes_of_next_run(h, shoot)
    assert any("1 new photo found; they join the job" in n for n in notes)
    await h.drive(job_id)
    expected = sorted([*(n for n in names if n != "IMG_0001.jpg"), "IMG_0100.jpg"])
    project = h.ledger_project(job_id)
    assert sorted(files_of(project)) == expected
    assert project is not None and sorted(project["edit_outputs"]) == expected
    assert sorted(p.file_name for p in await h.store.photos(job_id)) == expected


async def test_after_the_uploads_changes_are_reported_and_never_mixed_in(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=3, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_edit_request"))
    uploaded = {n: f["md5"] for n, f in files_of(h.ledger_project(job_id)).items()}
    new_version(shoot / "IMG_0001.jpg", "too late")
    (shoot / "IMG_0002.jpg").unlink()
    new_version(shoot / "IMG_0100.jpg", "too late")

    notes = " | ".join(await notes_of_next_run(h, shoot))
    assert "1 photo changed after the upload (IMG_0001.jpg)" in notes
    assert "1 photo removed from the folder after the upload (IMG_0002.jpg)" in notes
    assert "1 photo added after the upload (IMG_0100.jpg)" in notes
    await h.drive(job_id)
    project = h.ledger_project(job_id)
    files = files_of(project)
    # Imagen edited exactly what it was sent, once each; nothing new joined.
    assert {n: f["md5"] for n, f in files.items()} == uploaded
    assert all(f["uploads_completed"] == 1 for f in files.values())
    assert project is not None and len(project["edit_outputs"]) == len(uploaded)
    assert len(await source_events(h, job_id)) == 2
    assert (await h.store.get_job(job_id)).state == "completed"
    # The late photo is named on the job, once however often the folder is run again, and
    # every view lists it (issue 24 item 1).
    await notes_of_next_run(h, shoot)
    late = [e.data for e in await h.store.events(job_id) if e.kind == "added_late"]
    assert late == [{"photos": ["IMG_0100.jpg"]}]
    assert [(p.rel_path, p.outcome) for p in await failed_photos(h.store, job_id)] == [
        ("IMG_0100.jpg", "left_out")
    ]


async def test_a_photo_changed_during_its_upload_is_sent_in_its_new_version(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=4, jpeg_only=True)
    target = "IMG_0002.jpg"
    saved: list[str] = []

    class EditsWhileSending(Transfers):
        """Real transfers, but the photographer saves over one photo just as it is sent."""

        async def upload(self, path: Path, **kwargs: Any) -> Any:
            if path.name == target and not saved:
                saved.append(new_version(path, "while sending"))
            return await super().upload(path, **kwargs)

    h.transfers.__class__ = EditsWhileSending
    [job_id] = await h.plan(shoot)
    outcome = await h.drive(job_id)
    assert outcome.job.state == "completed"
    files = files_of(h.ledger_project(job_id))
    assert files[target]["md5"] == saved[0]
    assert files[target]["uploads_completed"] == 1
    assert any("changed during its upload" in m for m in await source_events(h, job_id))
