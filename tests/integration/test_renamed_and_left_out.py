"""Issue 15 item 1: a photo renamed before its upload is the same photo (to `run` and to
`retry`), and a photo gone before its upload makes the job's result say so, never silently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.service.jobs import failed_photos
from orchestrator.spec import JobSpec
from orchestrator.workflow.planning import RunRequest, plan_jobs
from tests.engine_harness import CrashPlan, Harness, harness
from tests.resume_support import make_crash_shoot


@pytest.fixture
async def h(migrated_db_url: str) -> AsyncIterator[Harness]:
    async with harness(migrated_db_url) as running:
        yield running


def _uploaded(h: Harness, job_id: str) -> list[str]:
    project = h.ledger_project(job_id)
    assert project is not None
    return sorted(project["files"])


async def test_a_photo_renamed_before_its_upload_is_sent_under_its_new_name_on_retry(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_crash_shoot(shoot, seed=5, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_checkpoint", 2))  # uploading, nothing sent
    (shoot / names[0]).rename(shoot / f"renamed {names[0]}")

    outcome = await h.drive(job_id)  # as `retry` does: no planning in between

    assert outcome.job.state == "completed"
    assert _uploaded(h, job_id) == sorted([f"renamed {names[0]}", *names[1:]])
    assert await failed_photos(h.store, job_id) == []
    messages = [e.message for e in await h.store.events(job_id)]
    assert any(f"{names[0]} was renamed to renamed {names[0]}" in m for m in messages)


async def test_a_photo_renamed_before_its_upload_stays_in_the_job_when_run_again(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_crash_shoot(shoot, seed=6, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_checkpoint", 2))
    (shoot / names[1]).rename(shoot / "new name.jpg")

    plan = await plan_jobs(
        h.store, h.client, RunRequest(source=shoot, profiles=["2001"], spec=JobSpec(export=True))
    )
    assert any(
        f"{names[1]} was renamed to new name.jpg; it stays in the job" in n for n in plan.notes
    )
    assert not any("new photos found" in n for n in plan.notes)
    await h.drive(job_id)
    assert _uploaded(h, job_id) == sorted(["new name.jpg", *(n for n in names if n != names[1])])
    assert await failed_photos(h.store, job_id) == []


async def test_a_photo_gone_before_its_upload_is_named_in_the_jobs_result(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_crash_shoot(shoot, seed=7, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    assert await h.crash(job_id, CrashPlan("after_checkpoint", 2))
    (shoot / names[0]).unlink()

    outcome = await h.drive(job_id)

    assert outcome.job.state == "completed"
    [failure] = await failed_photos(h.store, job_id)
    assert failure.rel_path == names[0]
    assert failure.reason.startswith("left out: it was gone from the folder before its upload")
