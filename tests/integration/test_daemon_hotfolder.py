"""The hot-folder watcher's rules, with a fake clock and a recording submit."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import update

from orchestrator.config import HotFolder
from orchestrator.service.hotfolder import HotFolders
from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, Store
from orchestrator.workflow.planning import Plan, PlanError, RunRequest
from tests.store_support import stored_job

SETTLE = 10.0


async def _set_state(store: Store, job_id: str, state: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(update(Job).where(Job.id == job_id).values(state=state))


class Recorder:
    """A submit that records requests; refuses folders named `bad*`."""

    def __init__(self) -> None:
        self.requests: list[RunRequest] = []

    async def __call__(self, request: RunRequest) -> Plan:
        self.requests.append(request)
        if request.source.name.startswith("bad"):
            raise PlanError("no profile for these photos")
        return Plan()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    from orchestrator.store.migrate import upgrade

    url = f"sqlite+aiosqlite:///{tmp_path / 'hot.db'}"
    await upgrade(url)
    store = Store.open(url)
    yield store
    await store.close()


def _watcher(store: Store, watched: Path, submit: Recorder, clock: Clock) -> HotFolders:
    hot = HotFolder(
        path=watched,
        profiles=["2001"],
        export=True,
        edit={"tools": ["crop"]},
        prefix_subfolders=True,
    )
    return HotFolders(
        [hot], store=store, submit=submit, settle_seconds=SETTLE, scan_seconds=1, clock=clock
    )


async def test_a_drop_is_submitted_once_after_it_settles(tmp_path: Path, store: Store) -> None:
    watched, submit, clock = tmp_path / "in", Recorder(), Clock()
    watcher = _watcher(store, watched, submit, clock)
    await watcher.scan()  # the watched folder does not exist yet: logged, nothing else
    (watched / "shoot").mkdir(parents=True)
    (watched / "shoot" / "a.jpg").write_bytes(b"1")
    (watched / ".hidden").mkdir()
    await watcher.scan()
    clock.now = SETTLE - 1
    (watched / "shoot" / "b.jpg").write_bytes(b"22")  # still copying: the clock restarts
    await watcher.scan()
    clock.now += SETTLE - 1
    await watcher.scan()
    assert submit.requests == []
    clock.now += 2
    await watcher.scan()
    [request] = submit.requests
    assert request.source == (watched / "shoot").resolve()
    assert (request.profiles, request.spec.export, request.spec.edit.tools) == (
        ["2001"],
        True,
        {"crop"},
    )
    assert request.prefix_subfolders  # the hot folder's, as `run --prefix-subfolders` gives it
    clock.now += SETTLE * 3
    await watcher.scan()
    await watcher.scan()
    assert len(submit.requests) == 1


async def test_refused_vanished_and_known_drops(tmp_path: Path, store: Store) -> None:
    watched, submit, clock = tmp_path / "in", Recorder(), Clock()
    (watched / "bad").mkdir(parents=True)
    (watched / "bad" / "x.jpg").write_bytes(b"1")
    (watched / "gone").mkdir()
    (watched / "known").mkdir()
    await store.create_job(
        NewJob(
            id="a" * 32,
            name="known",
            source=str((watched / "known").resolve()),
            edited_dir="/e",
            exported_dir="/x",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec={"version": 1},
            project_name="orchestrator-known",
        ),
        [],
    )
    watcher = _watcher(store, watched, submit, clock)
    await watcher.scan()
    (watched / "gone").rmdir()
    clock.now = SETTLE + 1
    await watcher.scan()
    await watcher.scan()
    # "bad" was refused once and is not retried while unchanged; "known" already has a live
    # job: planned once more (photos added while no daemon watched reach it), not resubmitted.
    assert sorted(r.source.name for r in submit.requests) == ["bad", "known"]
    (watched / "bad" / "y.jpg").write_bytes(b"2")
    await watcher.scan()
    clock.now += SETTLE + 1
    await watcher.scan()
    assert sorted(r.source.name for r in submit.requests) == ["bad", "bad", "known"]


async def test_a_submitted_drop_is_planned_again_when_it_changes_until_its_jobs_are_cancelled(
    tmp_path: Path, store: Store
) -> None:
    """Issue 24 item 1: a photo that landed in a drop after its submission (or after its jobs
    ended) was never seen; it is planned as `run --add` plans it: a follow-up of the shoot."""
    watched, submit, clock = tmp_path / "in", Recorder(), Clock()
    shoot = watched / "shoot"
    shoot.mkdir(parents=True)
    (shoot / "a.jpg").write_bytes(b"1")
    watcher = _watcher(store, watched, submit, clock)
    await watcher.scan()
    clock.now = SETTLE + 1
    await watcher.scan()
    assert len(submit.requests) == 1
    await store.create_job(
        NewJob(
            id="b" * 32,
            name="shoot",
            source=str(shoot.resolve()),
            edited_dir="/e",
            exported_dir="/x",
            image_type="JPG",
            profile_key=2001,
            profile_name="P",
            spec={"version": 1},
            project_name="orchestrator-shoot",
        ),
        [],
    )
    (shoot / "late.jpg").write_bytes(b"22")  # lands while the job runs
    await watcher.scan()
    clock.now += SETTLE - 1
    await watcher.scan()
    assert len(submit.requests) == 1  # not settled yet
    clock.now += 2
    await watcher.scan()
    assert [r.source for r in submit.requests] == [shoot.resolve()] * 2
    assert [r.add for r in submit.requests] == [False, True]
    clock.now += SETTLE * 3
    await watcher.scan()
    assert len(submit.requests) == 2  # nothing changed since

    await _set_state(store, "b" * 32, "completed")
    await watcher.scan()
    (shoot / "second-card.jpg").write_bytes(b"333")  # after the jobs ended
    await watcher.scan()
    clock.now += SETTLE + 1
    await watcher.scan()
    assert [r.add for r in submit.requests] == [False, True, True]

    await _set_state(store, "b" * 32, "cancelled")
    (shoot / "after-cancel.jpg").write_bytes(b"4444")
    await watcher.scan()
    clock.now += SETTLE + 1
    await watcher.scan()
    clock.now += SETTLE + 1
    (shoot / "more.jpg").write_bytes(b"55555")
    await watcher.scan()
    clock.now += SETTLE + 1
    await watcher.scan()
    assert len(submit.requests) == 3  # a cancelled shoot is never revived


async def test_a_restart_plans_an_ended_drop_only_when_a_file_came_after_its_jobs(
    tmp_path: Path, store: Store
) -> None:
    watched, submit, clock = tmp_path / "in", Recorder(), Clock()
    for name in ("old", "grown"):
        (watched / name).mkdir(parents=True)
        (watched / name / "a.jpg").write_bytes(b"1")
        await stored_job(store, name=name, source=str((watched / name).resolve()))
        async with store.engine.begin() as conn:
            await conn.execute(update(Job).values(state="completed"))
    stamp = time.time() + 3600  # written after the jobs ended (while no daemon watched)
    os.utime(watched / "grown" / "a.jpg", (stamp, stamp))
    watcher = _watcher(store, watched, submit, clock)
    await watcher.scan()
    clock.now = SETTLE + 1
    await watcher.scan()
    assert [(r.source.name, r.add) for r in submit.requests] == [("grown", True)]


async def test_a_refused_drop_is_shown_by_status_until_it_becomes_a_job_or_goes(
    tmp_path: Path, store: Store
) -> None:
    """Issue 15 item 16: refusals were only in the daemon's log."""
    from orchestrator.service import jobs as job_views

    watched, submit, clock = tmp_path / "in", Recorder(), Clock()
    (watched / "bad").mkdir(parents=True)
    (watched / "bad" / "x.jpg").write_bytes(b"1")
    (watched / "bad too").mkdir()
    (watched / "bad too" / "y.jpg").write_bytes(b"1")
    watcher = _watcher(store, watched, submit, clock)
    await watcher.scan()
    clock.now = SETTLE + 1
    await watcher.scan()
    shown = await job_views.status(store)
    assert sorted((v["name"], v["state"], v["last_error"]) for v in shown) == [
        ("bad", "refused", "no profile for these photos"),
        ("bad too", "refused", "no profile for these photos"),
    ]
    assert all(v["source"] == str((watched / v["name"]).resolve()) for v in shown)

    (watched / "bad too" / "y.jpg").unlink()
    (watched / "bad too").rmdir()
    (watched / "bad").rename(watched / "good")  # fixed: taken away under one name, back as another
    await watcher.scan()
    clock.now += SETTLE + 1
    await watcher.scan()
    assert await job_views.status(store) == []
    assert [r.source.name for r in submit.requests][-1] == "good"
