"""Issue 15 item 1: a photo renamed before its upload is the same photo (to `run` and to
`retry`), and a photo gone before its upload makes the job's result say so, never silently."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.service.jobs import failed_photos
from orchestrator.spec import JobSpec
from orchestrator.store.queries import NewJob
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


async def test_options_not_applied_to_an_existing_job_are_named(h: Harness, tmp_path: Path) -> None:
    """Issue 15 item 3: run again with other options says which are not applied; the same
    options (or a job from before output layouts asked only the default layout) say nothing."""
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=9, jpeg_only=True)
    [job_id] = await h.plan(shoot, export=True)

    async def notes(spec: JobSpec, profiles: list[str]) -> list[str]:
        request = RunRequest(source=shoot, profiles=profiles, spec=spec)
        return (await plan_jobs(h.store, h.client, request)).notes

    default_layout = JobSpec.build(export=True, outputs={})
    assert await notes(default_layout, ["2001"]) == []
    [note] = await notes(JobSpec.build(export=False, outputs={}), ["1001", "2001"])
    assert f"job {job_id[:8]} (queued) keeps the options it was started with" in note
    assert "the export given now are not applied" in note and "--again" in note


async def test_a_job_from_before_output_layouts_is_not_told_of_the_default_one(
    h: Harness, tmp_path: Path
) -> None:
    shoot = tmp_path / "old"
    make_crash_shoot(shoot, seed=10, jpeg_only=True)
    await h.store.create_job(
        NewJob(
            id="b" * 32,
            name="old",
            source=str(shoot.resolve()),
            edited_dir=str(shoot / "edited"),
            exported_dir=str(shoot / "exported"),
            image_type="JPG",
            profile_key=2001,
            profile_name="Natural",
            spec={"version": 1, "export": True},  # stored before `outputs` existed
            project_name="orchestrator-" + "b" * 32,
        ),
        [],
    )
    request = RunRequest(
        source=shoot, profiles=["2001"], spec=JobSpec.build(export=True, outputs={})
    )
    notes = (await plan_jobs(h.store, h.client, request)).notes
    assert not any("not applied" in n for n in notes), notes
