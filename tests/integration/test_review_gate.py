"""The review gate: a `--review` job waits in `reviewing` at no cost until a person decides.

Real engine, real sandbox, real database; keywords seeded by the stand-in tagging stage in
tests/review_support.py. The edits and approvals go through service/review.py, as the web page
and `orchestrator approve` do.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from pathlib import Path

import pytest

from orchestrator.sandbox import jpeg
from orchestrator.service import review
from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import utcnow
from orchestrator.store.queries import StateConflict
from orchestrator.workflow.context import Services
from orchestrator.workflow.engine import Engine, Outcome
from orchestrator.workflow.planning import RunRequest, plan_jobs
from orchestrator.workflow.review import RECHECK_SECONDS
from orchestrator.workflow.tag_details import TAG_PHASE
from tests.conftest import MakeDbUrl
from tests.engine_harness import Harness, harness
from tests.review_support import REVIEW_PIPELINE


def _engine(h: Harness, owner: str = "reviewer-test") -> Engine:
    return Engine(
        store=h.store,
        services=Services(imagen=h.client, transfers=h.transfers),
        progress=h.engine(owner).progress,
        config=h.config,
        owner=owner,
        pipeline=REVIEW_PIPELINE,
    )


def _write_shoot(shoot: Path, names: list[str]) -> None:
    shoot.mkdir()
    for name in names:
        (shoot / name).write_bytes(jpeg.with_comment(name.encode()))


async def _job_under_review(h: Harness, shoot: Path, names: list[str]) -> tuple[str, Outcome]:
    _write_shoot(shoot, names)
    plan = await plan_jobs(
        h.store,
        h.client,
        RunRequest(source=shoot, profiles=["2001"], spec=JobSpec(export=True, review=True)),
    )
    [job] = plan.jobs
    return job.id, await _engine(h).drive(job.id)


async def _tags(h: Harness, job_id: str) -> dict[str, dict[str, object]]:
    return {
        p.file_name: dict(p.phases[TAG_PHASE].details or {}) for p in await h.store.photos(job_id)
    }


async def test_a_run_job_stops_for_review_and_goes_on_once_approved(
    make_db_url: MakeDbUrl, tmp_path: Path
) -> None:
    url = await make_db_url()
    await upgrade(url)
    async with harness(url) as h:
        job_id, first = await _job_under_review(
            h, tmp_path / "shoot", ["a.jpg", "b.jpg", "flagged.jpg"]
        )
        assert first.waiting and first.job.state == JobState.REVIEWING
        assert (await h.store.get_job(job_id)).lease_owner is None  # waiting holds nothing

        # Driving it again (the user runs the command again) does not pass the gate.
        again = await _engine(h).drive(job_id)
        assert again.waiting and again.job.state == JobState.REVIEWING

        edited = await review.edit_keywords(
            h.store, job_id, "a.jpg", remove=["sunset"], add=["OCEAN"]
        )
        assert edited.keywords == ["beach", "sea", "ocean"]
        with pytest.raises(review.ReviewRefused, match="words that may be added: sunset, sand"):
            await review.edit_keywords(h.store, job_id, "a.jpg", add=["volcano"])
        tags = await _tags(h, job_id)
        assert tags["a.jpg"]["keywords"] == ["beach", "sea", "ocean"]
        assert tags["a.jpg"]["source"] == "reviewed"
        assert tags["b.jpg"]["source"] == "auto"
        assert tags["a.jpg"]["suggestions"] == tags["b.jpg"]["suggestions"]  # kept as they were

        approval = await review.approve(h.store, job_id)
        assert approval.complete
        assert sorted(approval.approved) == ["a.jpg", "b.jpg"]
        assert approval.held_back == ["flagged.jpg"]
        tags = await _tags(h, job_id)
        assert [tags[n]["approved"] for n in ("a.jpg", "b.jpg", "flagged.jpg")] == [
            True,
            True,
            False,
        ]

        done = await _engine(h).drive(job_id)
        assert done.job.state == JobState.COMPLETED
        messages = [e.message for e in await h.store.events(job_id)]
        assert "keywords of a.jpg changed by the reviewer" in messages
        assert "the job approved by the reviewer; 1 flagged photos held back" in messages
        assert "review done: 2 photos approved, 1 held back" in messages


async def test_a_flagged_photo_is_approved_only_by_name_and_the_gate_waits_for_all(
    make_db_url: MakeDbUrl, tmp_path: Path
) -> None:
    url = await make_db_url()
    await upgrade(url)
    async with harness(url) as h:
        job_id, _ = await _job_under_review(h, tmp_path / "shoot", ["a.jpg", "flagged.jpg"])
        partial = await review.approve(h.store, job_id, ["flagged.jpg"])
        assert not partial.complete and partial.remaining == ["a.jpg"]
        assert (await _engine(h).drive(job_id)).job.state == JobState.REVIEWING
        assert (await _tags(h, job_id))["flagged.jpg"]["approved"] is True

        whole = await review.approve(h.store, job_id)
        assert whole.complete and whole.approved == ["a.jpg"] and whole.held_back == []
        assert (await _engine(h).drive(job_id)).job.state == JobState.COMPLETED
        # Once it went on, the review is closed: no more edits or approvals.
        with pytest.raises(StateConflict, match="not waiting for review"):
            await review.approve(h.store, job_id)
        with pytest.raises(StateConflict, match="not waiting for review"):
            await review.edit_keywords(h.store, job_id, "a.jpg", remove=["sea"])


async def test_a_daemon_job_sleeps_in_the_database_and_approval_makes_it_due(
    make_db_url: MakeDbUrl, tmp_path: Path
) -> None:
    url = await make_db_url()
    await upgrade(url)
    async with harness(url) as h:
        job_id, _ = await _job_under_review(h, tmp_path / "shoot", ["a.jpg"])
        h.config = dataclasses.replace(h.config, wait_inline=False)  # now a daemon drives it
        first = await _engine(h).drive(job_id)
        assert first.waiting and first.job.state == JobState.REVIEWING
        assert first.job.wake_at is not None
        assert first.job.wake_at > utcnow() + timedelta(seconds=RECHECK_SECONDS - 60)

        await review.approve(h.store, job_id)
        job = await h.store.get_job(job_id)
        assert job.wake_at is not None and job.wake_at <= utcnow()
        assert job.lease_owner is None
        assert (await _engine(h).drive(job_id)).job.state == JobState.COMPLETED


async def test_refusals_name_what_is_allowed(make_db_url: MakeDbUrl, tmp_path: Path) -> None:
    url = await make_db_url()
    await upgrade(url)
    async with harness(url) as h:
        job_id, _ = await _job_under_review(h, tmp_path / "shoot", ["a.jpg"])
        with pytest.raises(review.ReviewRefused, match=r"'volcano' is not a keyword of a\.jpg"):
            await review.edit_keywords(h.store, job_id, "a.jpg", remove=["volcano"])
        with pytest.raises(LookupError, match=r"has no photo 'z\.jpg'"):
            await review.approve(h.store, job_id, ["z.jpg"])
        assert (await _tags(h, job_id))["a.jpg"]["keywords"] == ["beach", "sunset", "sea"]
