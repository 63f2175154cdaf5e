"""Per-photo failures, `retry`, `cancel`, a full disk and an unwritable output folder, for real.

Each failure is made the way it happens on a photographer's machine: something sits where an
output must go, a photo becomes unreadable, the disk fills up (a tmpfs too small for the
edits, when this machine lets the test mount one), the output folder cannot be created.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_interrupts import wait_until_uploading
from tests.helpers import cli_env, ledger, md5_of, orchestrator, sandbox_process
from tests.resume_support import (
    BIG_JPEG,
    assert_exactly_once,
    finished_jobs,
    make_crash_shoot,
    project_of,
    run_shoot,
    start_shoot,
    stored_jobs,
)

KILLED = -signal.SIGKILL
FILESYSTEM_ONLY = pytest.mark.parametrize("db_backend", ["sqlite"])
"""For what only the filesystem decides: the database's part is covered by the other tests."""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.3") as url:
        yield url


def test_an_output_that_cannot_be_written_fails_alone_and_retry_fetches_only_it(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, jpeg_only=True)
    blocked = shoot / "edited" / "IMG_0002.jpg"
    blocked.mkdir(parents=True)  # a folder where the edit must go: the rename cannot happen
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)

    failed = run_shoot(shoot, env, json_output=False)
    assert failed.returncode == 1, failed.stderr[-3000:]
    # The end of the run names the photo, why, and the way out.
    assert "failed IMG_0002.jpg (edit download):" in failed.stdout
    [job] = stored_jobs(migrated_db_url, shoot)
    assert f"orchestrator retry {job['id'][:8]}" in failed.stdout
    assert job["state"] == "failed"
    assert [(p.rel_path, phase) for p in job["photos"].values() for phase, _ in p.failures] == [
        ("IMG_0002.jpg", "edit")
    ]
    project = project_of(sandbox_url, job)
    assert project["export_requests"] == 0  # the job stopped before the export
    for name, md5 in project["edit_outputs"].items():
        if name != "IMG_0002.jpg":  # the others went on and are in place
            assert md5_of(shoot / "edited" / name) == md5
    fetched_before = project["downloads_completed"]["edit"]

    blocked.rmdir()
    retried = orchestrator("retry", job["id"][:8], "--json", env=env)
    [done] = finished_jobs(retried)
    assert_exactly_once(sandbox_url, [done], shoot, kills=0, files=len(files))
    fetched_after = project_of(sandbox_url, job)["downloads_completed"]["edit"]
    assert {n: c for n, c in fetched_after.items() if n != "IMG_0002.jpg"} == {
        n: c for n, c in fetched_before.items() if n != "IMG_0002.jpg"
    }
    kinds = [kind for kind, _ in stored_jobs(migrated_db_url, shoot)[0]["events"]]
    assert {"error", "retry", "resume"} <= set(kinds)


def test_an_unreadable_photo_fails_alone_and_retry_uploads_only_it(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, seed=1, jpeg_only=True)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    # Killed once uploading has begun (2nd state change), before any photo was read.
    crashed = run_shoot(shoot, {**env, "ORCH_CRASH_AT": "after_checkpoint:2"})
    assert crashed.returncode == KILLED, crashed.stderr[-3000:]
    # The photo becomes unreadable (as root, only something that is not a file will do).
    photo = shoot / "IMG_0002.jpg"
    original = photo.read_bytes()
    photo.unlink()
    photo.mkdir()

    failed = run_shoot(shoot, env)
    assert failed.returncode == 1, failed.stderr[-3000:]
    [job] = json.loads(failed.stdout)
    assert job["state"] == "failed"
    assert [(p["path"], p["phase"]) for p in job["failed_photos"]] == [("IMG_0002.jpg", "upload")]
    assert "cannot read it" in job["failed_photos"][0]["reason"]
    # The photo is named once: by the stage, not again by the transfer's own message.
    assert not job["failed_photos"][0]["reason"].startswith("IMG_0002.jpg")
    assert job["last_error"].count("IMG_0002.jpg") == 1, job["last_error"]
    project = project_of(sandbox_url, job)
    # The others were uploaded; the edit waits for every photo.
    assert sorted(project["files"]) == sorted(n for n in files if n != "IMG_0002.jpg")
    assert project["edit_requests"] == 0

    photo.rmdir()
    photo.write_bytes(original)
    retried = orchestrator("retry", job["id"][:8], "--json", env=env)
    [done] = finished_jobs(retried)
    assert_exactly_once(sandbox_url, [done], shoot, kills=1, files=len(files))
    counts = {n: f["uploads_completed"] for n, f in project_of(sandbox_url, job)["files"].items()}
    assert counts == dict.fromkeys(files, 1)


def test_cancel_stops_a_job_nobody_drives_at_once(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=2, jpeg_only=True)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    # A killed run leaves its lease behind; the cancel must not wait for a driver that is gone.
    crashed = run_shoot(shoot, {**env, "ORCH_CRASH_AT": "after_upload"})
    assert crashed.returncode == KILLED
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["lease_owner"] is not None

    cancelled = orchestrator("cancel", job["id"][:8], "--json", env=env)
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout)["state"] == "cancelled"
    refused = orchestrator("retry", job["id"][:8], env=env)
    assert refused.returncode == 2 and "not failed" in refused.stderr
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "cancelled" and ("transition", "cancelled by the user") in job["events"]


def test_cancel_stops_a_running_job_within_seconds(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_crash_shoot(shoot, seed=3, jpeg_only=True)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    run = start_shoot(shoot, env, "--bwlimit", "100K")
    try:
        wait_until_uploading(run)
        [job] = stored_jobs(migrated_db_url, shoot)
        cancelled = orchestrator("cancel", job["id"][:8], env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert "cancel requested" in cancelled.stdout
        # The driver looks for a cancel every few seconds (EngineConfig.cancel_poll_seconds).
        stdout, stderr = run.communicate(timeout=30)
    finally:
        run.kill()
    assert run.returncode == 1, stderr[-3000:]
    [reported] = json.loads(stdout)
    assert reported["state"] == "cancelled"
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "cancelled" and job["lease_owner"] is None
    # At 100 KB/s the 2 MB JPEG takes some 20 s: the cancel stopped the upload, not its end.
    assert not job["photos"][BIG_JPEG].done("upload")
    assert project_of(sandbox_url, reported)["edit_requests"] == 0


@FILESYSTEM_ONLY
def test_an_output_folder_that_cannot_be_made_is_refused_before_anything_is_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, seed=4, jpeg_only=True)
    (shoot / "edited").write_text("a file where the output folder must go")
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    projects = len(ledger(sandbox_url)["projects"])

    refused = run_shoot(shoot, env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "is a file, not a folder" in " ".join(refused.stderr.split())
    assert len(ledger(sandbox_url)["projects"]) == projects  # nothing was sent
    assert stored_jobs(migrated_db_url, shoot) == []

    (shoot / "edited").unlink()
    [done] = finished_jobs(run_shoot(shoot, env))
    assert_exactly_once(sandbox_url, [done], shoot, kills=0, files=len(files))


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 MiB tmpfs (room for the shoot's edits when the run starts), unmounted afterwards;
    skips if not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount_point)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}); "
            "the unwritable-folder test covers the same path"
        )
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


@FILESYSTEM_ONLY
def test_a_disk_filled_during_the_run_stops_the_job_loses_nothing_and_the_next_run_continues(
    migrated_db_url: str, tmp_path: Path, small_disk: Path
) -> None:
    """The check before sending found room; something else filled the disk during the edit."""
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, seed=5, jpeg_only=True)
    (shoot / "edited").symlink_to(small_disk, target_is_directory=True)
    filler = small_disk / "someone-else's-file"
    with sandbox_process("--edit-seconds", "3") as url:
        env = cli_env(f"{url}/v1", migrated_db_url)
        run = start_shoot(shoot, env)
        try:
            wait_until_uploading(run)  # past the check: fill the disk but for 1 MiB
            disk = os.statvfs(small_disk)
            with filler.open("wb") as taking:
                os.posix_fallocate(taking.fileno(), 0, disk.f_bavail * disk.f_frsize - 2**20)
            stdout, stderr = run.communicate(timeout=120)
        finally:
            run.kill()
        assert run.returncode == 1, stderr[-3000:]
        [job] = json.loads(stdout)
        assert job["state"] == "downloading_edits"
        assert "No space left on device" in job["paused"]
        partial = small_disk / f"{BIG_JPEG}.partial"
        assert 0 < partial.stat().st_size < 2_000_000  # what did fit is kept

        filler.unlink()
        [done] = finished_jobs(run_shoot(shoot, env))
        assert_exactly_once(url, [done], shoot, kills=0, files=len(files))
    # What stopped it stays in its history, not as the completed job's error (issue 24 item 9).
    assert done["last_error"] is None and done["state_text"] == "completed"
    events = stored_jobs(migrated_db_url, shoot)[0]["events"]
    assert any(kind == "paused" and "No space left" in message for kind, message in events)
    assert any(
        message.startswith(f"{BIG_JPEG}: continued the interrupted download of its edit output")
        for kind, message in events
        if kind == "resume"
    )
