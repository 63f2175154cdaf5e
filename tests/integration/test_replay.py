"""Replay per invariant: the state left at each crash point, resumed, reaches the same end.

Each scenario drives one job (three JPEGs, one of them 2 MB, with export) in-process until a
simulated crash at one point (see tests/engine_harness.py), takes a snapshot of what the crash
left (database, sandbox ledger, output folders), resumes it as the next run would, and takes a
snapshot of the end. Every scenario runs once per database; one test per invariant then judges
all the snapshots. The real-process version of the same kills is tests/e2e/test_crash_resume.py.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrator.states import TERMINAL_STATES, JobState
from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import PhotoRecord
from orchestrator.workflow.pipeline import PIPELINE
from tests.conftest import database_factory
from tests.engine_harness import CrashPlan, Harness, harness
from tests.resume_support import make_crash_shoot

CRASH_POINTS = PIPELINE.crash_points
"""Every crash point, as the stages declare them."""

SCENARIOS: list[tuple[str, int]] = [
    ("before_create_project", 1),
    ("after_create_project", 1),
    # One job has 12 state changes; a crash right after each of them.
    *[("after_checkpoint", n) for n in range(1, 13)],
    ("mid_upload", 1),
    ("after_upload", 1),
    ("after_upload", 3),
    ("before_edit_request", 1),
    ("after_edit_request", 1),
    # The first pass usually lands in a tiny output (whole body written, not renamed), the
    # third in the first MiB of the 2 MB one.
    ("mid_download", 1),
    ("mid_download", 3),
    ("before_rename", 1),
    ("after_download", 1),
    ("after_download", 4),
    ("before_export_request", 1),
    ("after_export_request", 1),
]
IDS = [f"{point}:{count}" for point, count in SCENARIOS]
ORDER = list(JobState)


@dataclass(frozen=True)
class Snapshot:
    """What is recorded at one instant: the job, its photos, the ledger, the output folders."""

    state: str
    project_uuid: str | None
    photos: dict[str, dict[str, Any]]
    project: dict[str, Any] | None
    finals: dict[str, str]
    """md5 of every file at its final name in the output folders, by "edit/NAME"."""
    partials: dict[str, int]
    """Size of every partial download, by "edit/NAME.partial"."""
    events: list[tuple[str, str]]


@dataclass(frozen=True)
class Replay:
    """One scenario: whether the crash point was reached, the state it left, and the end."""

    reached: bool
    crash: Snapshot
    end: Snapshot


_replays: dict[tuple[str, str, int], Replay] = {}


def replay(backend: str, point: str, count: int, tmp: Path) -> Replay:
    """The scenario's snapshots, computed on first use."""
    key = (backend, point, count)
    if key not in _replays:
        _replays[key] = asyncio.run(_run(backend, point, count, tmp))
    return _replays[key]


async def _run(backend: str, point: str, count: int, tmp: Path) -> Replay:
    async with database_factory(backend, tmp) as make_url:
        url = await make_url()
        await upgrade(url)
        async with harness(url) as h:
            shoot = tmp / "shoot"
            make_crash_shoot(shoot, seed=_seed(backend, point, count), jpeg_only=True)
            [job_id] = await h.plan(shoot)
            reached = await h.crash(job_id, CrashPlan(point, count))
            crash = await _snapshot(h, job_id)
            # The next `orchestrator run`: plan the folder again (it finds the job), drive it.
            assert await h.plan(shoot) == [job_id]
            if JobState(crash.state) not in TERMINAL_STATES:
                await h.drive(job_id)
            return Replay(reached, crash, await _snapshot(h, job_id))


def _seed(backend: str, point: str, count: int) -> int:
    """The scenario's shoot, the same whichever worker runs it and whatever ran before."""
    offset = len(SCENARIOS) if backend == "postgres" else 0
    return offset + SCENARIOS.index((point, count))


async def _snapshot(h: Harness, job_id: str) -> Snapshot:
    job = await h.store.get_job(job_id)
    photos = {
        p.file_name: {
            "uploaded": p.done("upload"),
            "edit_done": p.done("edit"),
            "edit_output": _output(p, "edit"),
            "edit_md5": _md5(p, "edit"),
            "export_done": p.done("export"),
            "export_output": _output(p, "export"),
            "export_md5": _md5(p, "export"),
        }
        for p in await h.store.photos(job_id)
    }
    finals: dict[str, str] = {}
    partials: dict[str, int] = {}
    for phase, folder in (("edit", Path(job.edited_dir)), ("export", Path(job.exported_dir))):
        for path in sorted(folder.glob("*")) if folder.is_dir() else []:
            if ".partial" in path.name:
                partials[f"{phase}/{path.name}"] = path.stat().st_size
            else:
                finals[f"{phase}/{path.name}"] = hashlib.md5(path.read_bytes()).hexdigest()
    events = [(e.kind, e.message) for e in await h.store.events(job_id)]
    return Snapshot(
        job.state, job.project_uuid, photos, h.ledger_project(job_id), finals, partials, events
    )


def _output(photo: PhotoRecord, phase: str) -> str | None:
    record = photo.phase(phase)
    return record.output if record else None


def _md5(photo: PhotoRecord, phase: str) -> str | None:
    record = photo.phase(phase)
    return record.md5 if record else None


@pytest.fixture
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Replay:
    backend, (point, count) = request.param
    found = replay(
        backend, point, count, tmp_path_factory.mktemp(f"replay-{backend}-{point}-{count}")
    )
    if not found.reached:
        pytest.skip(
            f"crash point {point!r} is never reached (its crash_point() call is not "
            "in the code yet)"
        )
    return found


def _scenarios() -> list[Any]:
    """Every scenario on SQLite, then on Postgres (skipped without a server).

    A scenario's tests share one xdist group, so its run is made once, on one worker.
    """
    return [
        pytest.param(
            (backend, scenario),
            marks=(*marks, pytest.mark.xdist_group(f"replay-{backend}-{name}")),
            id=f"{backend}-{name}",
        )
        for backend, marks in (("sqlite", ()), ("postgres", (pytest.mark.postgres,)))
        for scenario, name in zip(SCENARIOS, IDS, strict=True)
    ]


every_scenario = pytest.mark.parametrize("scenario", _scenarios(), indirect=True)


WALKED_ELSEWHERE = {
    "test_tagging.py": {"after_imagga_answer", "after_keywords_written"},
    "test_delivery.py": {"before_deliver_upload", "after_deliver_upload", "after_deliver"},
}
"""Points of the keywording and delivery stages, which this harness's jobs do not ask for:
real processes are killed at each in those e2e tests."""


def test_every_crash_point_has_a_scenario() -> None:
    elsewhere = set().union(*WALKED_ELSEWHERE.values())
    assert {point for point, _ in SCENARIOS} == set(CRASH_POINTS) - elsewhere
    for test, points in WALKED_ELSEWHERE.items():
        text = (Path(__file__).parents[1] / "e2e" / test).read_text()
        assert all(f'"{point}:' in text for point in points), test


@every_scenario
def test_invariant_1_a_checkpointed_transfer_is_never_repeated(scenario: Replay) -> None:
    crash, end = scenario.crash, scenario.end
    assert end.state == JobState.COMPLETED.value
    if crash.project is None:
        return
    for name, photo in crash.photos.items():
        if photo["uploaded"]:
            assert end.project is not None
            assert (
                end.project["files"][name]["uploads_completed"]
                == crash.project["files"][name]["uploads_completed"]
            ), name
        for phase in ("edit", "export"):
            output = photo[f"{phase}_output"]
            if photo[f"{phase}_done"]:
                assert end.project is not None
                assert (
                    end.project["downloads_completed"][phase][output]
                    == crash.project["downloads_completed"][phase][output]
                ), output
    # And the resumed run says where it picked up.
    if JobState(crash.state) not in TERMINAL_STATES:
        assert any(kind == "resume" for kind, _ in end.events[len(crash.events) :])


@every_scenario
def test_invariant_2_one_project_one_edit_one_export(scenario: Replay) -> None:
    crash, end = scenario.crash, scenario.end
    if crash.project is not None:
        # The intent is committed before each call: a request Imagen has is never one the
        # database does not know it may have sent.
        assert crash.project["edit_requests"] <= 1
        assert crash.project["export_requests"] <= 1
        if crash.project["edit_requests"]:
            assert ORDER.index(JobState(crash.state)) >= ORDER.index(JobState.EDIT_REQUESTED)
        if crash.project["export_requests"]:
            assert ORDER.index(JobState(crash.state)) >= ORDER.index(JobState.EXPORT_REQUESTED)
        if crash.project_uuid is None:
            # Created but not checkpointed: the resume must find it by name, not make a twin.
            assert crash.state == JobState.QUEUED.value
    assert end.project is not None
    assert end.project["project_uuid"] == end.project_uuid
    assert (end.project["edit_requests"], end.project["export_requests"]) == (1, 1)
    assert end.project["edit_requests_rejected"] == 0


@every_scenario
def test_invariant_3_the_edit_never_starts_on_a_partial_upload(scenario: Replay) -> None:
    for snap in (scenario.crash, scenario.end):
        if snap.project is None or not snap.project["edit_requests"]:
            continue
        assert all(p["uploaded"] for p in snap.photos.values())
        assert sorted(snap.project["edit_inputs"]) == sorted(snap.photos)
        assert all(f["uploads_completed"] >= 1 for f in snap.project["files"].values())


@every_scenario
def test_invariant_5_nothing_half_written_is_taken_for_done(scenario: Replay) -> None:
    crash, end = scenario.crash, scenario.end
    for snap in (crash, end):
        if snap.project is None:
            continue
        made = {f"edit/{n}": m for n, m in snap.project["edit_outputs"].items()} | {
            f"export/{n}": m for n, m in snap.project["export_outputs"].items()
        }
        # A file under its final name is always complete and verified...
        for name, md5 in snap.finals.items():
            assert made[name] == md5, name
        # ...and a photo checkpointed as downloaded has it there.
        for photo in snap.photos.values():
            for phase in ("edit", "export"):
                if photo[f"{phase}_done"]:
                    key = f"{phase}/{photo[f'{phase}_output']}"
                    assert snap.finals[key] == photo[f"{phase}_md5"] == made[key]
    assert end.partials == {}
    assert len(end.finals) == 2 * len(end.photos)
    # A partial the crash left with bytes in it is continued, not fetched again from zero.
    for partial, size in crash.partials.items():
        name = partial.split("/", 1)[1].removesuffix(".partial")
        if size and partial.endswith(".partial"):
            assert any(
                kind == "resume" and message.startswith(f"{name}: continued")
                for kind, message in end.events
            ), partial
