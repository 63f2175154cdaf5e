"""Shoots run through a faulty sandbox: every output verified against the ledger, none half-written.

Each test starts a sandbox process with one fault kind (or a mix of all of them) switched on at a
fixed seed, runs `orchestrator run --export --json` as a real process on a RAW + JPEG shoot, and
then checks the run against what the sandbox recorded: one project per job, one edit and one
export per project, every upload and every download byte for byte, and no temporary or stray file
in the output folders. Each test also checks that its faults were really injected, so that a
sandbox which stopped misbehaving cannot make it pass for nothing.

SQLite only: the database has nothing to do with the faults, and the Postgres paths are covered
by the store and e2e tests.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, ledger, leftovers, md5_of, orchestrator, sandbox_process

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"
RAW_PHOTOS, JPEG_PHOTOS, RAW_SIZE = 6, 4, 200 * 1024
SEED = "20240607"
RUN_TIMEOUT = 180.0

REQUEST_FAULTS = {
    "error_5xx": 0.2,
    "throttle_429": 0.2,
    "reset": 0.25,
    "slow": 0.2,
    # Drawn for every request but acting only on storage ones, which are about half of them.
    "expire_link": 0.3,
}
"""Faults that act on requests, with a probability that hits many of a run's ~80 requests."""

CALLBACK_FAULTS = ("lose_callback", "duplicate_callback", "reorder_callback")

MIX = {
    "error_5xx": 0.1,
    "throttle_429": 0.1,
    "reset": 0.1,
    "slow": 0.1,
    "expire_link": 0.2,
    **dict.fromkeys(CALLBACK_FAULTS, 0.3),
}
"""Every fault at once; expire_link higher as it only ever hits storage requests."""

NO_CALLBACKS = pytest.mark.skip(
    reason="`orchestrator run` polls and sends no callback_url, so the sandbox has no callback "
    "to lose, duplicate or reorder; these need a callback receiver (the daemon)"
)


def _spec(faults: dict[str, float]) -> str:
    return ",".join(f"{name}={probability}" for name, probability in faults.items())


def _diagnosis(env: dict[str, str], run: subprocess.CompletedProcess[str]) -> str:
    """The run's output and every job's history, to tell a transfer, sandbox or engine bug apart."""
    parts = [
        f"exit {run.returncode}",
        f"stdout:\n{run.stdout[-4000:]}",
        f"stderr:\n{run.stderr[-8000:]}",
    ]
    status = orchestrator("status", "--json", env=env)
    try:
        jobs = json.loads(status.stdout)
    except json.JSONDecodeError:
        return "\n".join([*parts, f"status: {status.stdout} {status.stderr}"])
    for job in jobs:
        history = orchestrator("history", job["id"], "--json", env=env)
        parts.append(f"history of {job['id']}:\n{history.stdout[-6000:]}")
    return "\n".join(parts)


def _check_project(project: dict[str, Any], job: dict[str, Any], shoot: Path) -> None:
    """One job's uploads and outputs against the sandbox's record of its project."""
    assert project["edit_requests"] == 1, project
    assert project["export_requests"] == 1, project
    photos = sorted(
        p
        for p in shoot.iterdir()
        if p.is_file() and (p.suffix == ".CR2") == (job["image_type"] == "RAW")
    )
    assert sorted(project["files"]) == [p.name for p in photos]
    for photo in photos:
        stored = project["files"][photo.name]
        # No injected fault can lose the answer to a PUT that went through: no second upload.
        assert stored["uploads_completed"] == 1, (photo.name, stored)
        assert (stored["size"], stored["md5"]) == (photo.stat().st_size, md5_of(photo))
    for key, folder in (
        ("edit_outputs", job["edited_dir"]),
        ("export_outputs", job["exported_dir"]),
    ):
        outputs: dict[str, str] = project[key]
        assert len(outputs) == len(photos), (key, outputs)
        on_disk = sorted(p.name for p in Path(folder).iterdir())
        assert on_disk == sorted(outputs), f"{folder} holds more or less than the {key}"
        for name, md5 in outputs.items():
            assert md5_of(Path(folder) / name) == md5, f"{folder}/{name} differs from the ledger"


def _run_faulty_shoot(tmp_path: Path, faults: dict[str, float]) -> dict[str, int]:
    """Run a RAW + JPEG shoot against a sandbox with `faults`; the faults the ledger counted."""
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=RAW_PHOTOS, jpeg=JPEG_PHOTOS, raw_size=RAW_SIZE)
    with sandbox_process(
        "--edit-seconds", "0.3", "--faults", _spec(faults), "--seed", SEED
    ) as base_url:
        env = cli_env(
            f"{base_url}/v1",
            f"sqlite+aiosqlite:///{tmp_path / 'orch.sqlite'}",
            ORCH_POLL_INITIAL="0.1",
            ORCH_POLL_MAX="0.3",
        )
        run = orchestrator(
            "run",
            str(shoot),
            "--profile",
            RAW_PROFILE,
            "--profile",
            JPEG_PROFILE,
            "--export",
            "--json",
            env=env,
            timeout=RUN_TIMEOUT,
        )
        assert run.returncode == 0, _diagnosis(env, run)
        jobs = json.loads(run.stdout)
        recorded = ledger(base_url)

    assert sorted(job["image_type"] for job in jobs) == ["JPG", "RAW"]
    assert [job["state"] for job in jobs] == ["completed"] * 2, _diagnosis(env, run)
    projects: dict[str, list[dict[str, Any]]] = {}
    for project in recorded["projects"]:
        projects.setdefault(project["project_uuid"], []).append(project)
    # Exactly one project per job: no twin from a create whose answer was lost.
    assert len(recorded["projects"]) == len(jobs), [p["name"] for p in recorded["projects"]]
    for job in jobs:
        [project] = projects[job["project_uuid"]]
        _check_project(project, job, shoot)
    assert leftovers(shoot) == []
    injected: dict[str, int] = recorded["faults"]
    return injected


@pytest.mark.parametrize(
    "kind",
    [
        *REQUEST_FAULTS,
        *(pytest.param(kind, marks=NO_CALLBACKS) for kind in CALLBACK_FAULTS),
    ],
)
def test_shoot_survives_one_fault_kind(tmp_path: Path, kind: str) -> None:
    injected = _run_faulty_shoot(tmp_path, {kind: REQUEST_FAULTS.get(kind, 0.3)})
    assert injected.get(kind, 0) > 0, f"the sandbox injected no {kind}: {injected}"


def test_shoot_survives_every_fault_at_once(tmp_path: Path) -> None:
    injected = _run_faulty_shoot(tmp_path, MIX)
    missing = [kind for kind in REQUEST_FAULTS if injected.get(kind, 0) == 0]
    assert not missing, f"the sandbox injected no {missing}: {injected}"
