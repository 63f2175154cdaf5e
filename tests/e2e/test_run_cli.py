"""`orchestrator run --export` on RAW and JPEG shoots against a sandbox process on a real port."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import (
    cli_env,
    ledger,
    leftovers,
    md5_of,
    orchestrator,
    sandbox_process,
    status_jobs,
)

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"


@pytest.fixture(scope="module")
def sandbox_url() -> object:
    with sandbox_process("--edit-seconds", "0.5") as url:
        yield url


def _check_outputs_against_ledger(base_url: str, job: dict[str, object]) -> int:
    projects = {p["project_uuid"]: p for p in ledger(base_url)["projects"]}
    project = projects[job["project_uuid"]]
    assert project["edit_requests"] == 1
    assert project["export_requests"] == 1
    assert project["edit_requests_rejected"] == 0
    assert project["export_requests_rejected"] == 0
    checked = 0
    for key, folder in (
        ("edit_outputs", job["edited_dir"]),
        ("export_outputs", job["exported_dir"]),
    ):
        outputs = project[key]
        assert outputs, f"sandbox produced no {key}"
        on_disk = sorted(p.name for p in Path(str(folder)).iterdir() if p.is_file())
        assert on_disk == sorted(outputs)
        for name, md5 in outputs.items():
            assert md5_of(Path(str(folder)) / name) == md5, name
            checked += 1
    return checked


def test_mixed_shoot_runs_to_the_end_and_every_byte_matches_the_ledger(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "wedding"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=5, jpeg=3)
    (shoot / "notes.txt").write_text("not a photo")
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)

    done = orchestrator(
        "run",
        str(shoot),
        "--profile",
        RAW_PROFILE,
        "--profile",
        JPEG_PROFILE,
        "--export",
        "--json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    jobs = json.loads(done.stdout)
    assert sorted(j["image_type"] for j in jobs) == ["JPG", "RAW"]
    assert all(j["state"] == "completed" for j in jobs)
    assert "notes.txt" in done.stderr  # the unsupported file is named, not sent

    projects = ledger(sandbox_url)["projects"]
    ours = [p for p in projects if p["project_uuid"] in {j["project_uuid"] for j in jobs}]
    assert len(ours) == 2
    for project in ours:
        assert all(f["uploads_completed"] == 1 for f in project["files"].values())
        assert "notes.txt" not in project["files"]
    raw_job = next(j for j in jobs if j["image_type"] == "RAW")
    assert {
        Path(n).suffix
        for n in next(p for p in ours if p["project_uuid"] == raw_job["project_uuid"])[
            "edit_outputs"
        ]
    } == {".xmp"}
    assert sum(_check_outputs_against_ledger(sandbox_url, job) for job in jobs) == 2 * 8
    assert leftovers(shoot) == []

    [wedding] = json.loads(orchestrator("status", "--json", env=env).stdout)
    assert (wedding["name"], wedding["source"]) == (shoot.name, str(shoot.resolve()))
    assert (wedding["state"], wedding["photos"]) == ("completed", 8)
    assert sorted(j["id"] for j in wedding["jobs"]) == sorted(j["id"] for j in jobs)
    listed = {j["id"]: j for j in status_jobs(env)}
    for job in jobs:
        entry = listed[job["id"]]
        assert entry["state"] == "completed"
        assert entry["source"] == str(shoot.resolve())
        assert entry["photos"] == (5 if job["image_type"] == "RAW" else 3)
        assert entry["last_error"] is None

    history = orchestrator("history", jobs[0]["id"][:8], "--json", env=env)
    assert history.returncode == 0
    states = [e["to_state"] for e in json.loads(history.stdout)["events"] if e["to_state"]]
    assert states[0] == "queued" and states[-1] == "completed"
    assert "edit_requested" in states and "downloading_exports" in states

    again = orchestrator(
        "run", str(shoot), "--profile", RAW_PROFILE, "--profile", JPEG_PROFILE, "--export", env=env
    )
    assert again.returncode == 0, again.stderr
    assert "already completed" in again.stderr
    after = {p["project_uuid"]: p for p in ledger(sandbox_url)["projects"]}
    for project in ours:
        assert after[project["project_uuid"]]["edit_requests"] == 1


def test_jpeg_only_shoot_writes_edited_and_exported(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "portraits"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=0, jpeg=4)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    done = orchestrator(
        "run", str(shoot), "--profile", JPEG_PROFILE.lower(), "--export", "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    [job] = json.loads(done.stdout)
    assert job["edited_dir"] == str((shoot / "edited").resolve())
    assert job["exported_dir"] == str((shoot / "exported").resolve())
    assert _check_outputs_against_ledger(sandbox_url, job) == 8
    for exported in (shoot / "exported").iterdir():
        data = exported.read_bytes()
        assert data[:2] == b"\xff\xd8" and data[-2:] == b"\xff\xd9"
