"""Ctrl-C and SIGTERM on a real `orchestrator run`: the first stops cleanly, a second forces.

The run is slowed down with a bandwidth cap so that the signal lands mid-upload; the test
waits for the JSON progress line saying the uploads began, signals, and checks the exit code,
the resume hint and what the job looks like; then the same command, run again, finishes with
one project, one edit and one export.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, orchestrator, sandbox_process
from tests.resume_support import (
    assert_exactly_once,
    finished_jobs,
    make_crash_shoot,
    run_shoot,
    start_shoot,
    stored_jobs,
)

RESUME_HINT = "run the same command again to resume"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.3") as url:
        yield url


def wait_until_uploading(run: subprocess.Popen[str], timeout: float = 60) -> None:
    """Read the run's JSON progress until the uploads have begun."""
    assert run.stderr is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = run.stderr.readline()
        if not line:
            raise AssertionError(f"the run ended before uploading (exit {run.wait()})")
        if not line.startswith("{"):
            continue
        event = json.loads(line)
        if event["stage"] == "upload" and event["event"] == "stage_started":
            return
    raise AssertionError("no upload progress in time")


@pytest.mark.parametrize(
    ("signum", "db_backend"),
    [
        (signal.SIGINT, "sqlite"),
        pytest.param(signal.SIGINT, "postgres", marks=pytest.mark.postgres),
        # The same handler: once on SQLite is enough.
        (signal.SIGTERM, "sqlite"),
    ],
    ids=["SIGINT-sqlite", "SIGINT-postgres", "SIGTERM-sqlite"],
)
def test_one_signal_stops_at_a_checkpoint_and_the_same_command_resumes(
    signum: signal.Signals, sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)

    run = start_shoot(shoot, env, "--bwlimit", "300K")
    wait_until_uploading(run)
    run.send_signal(signum)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 130, stderr[-3000:]
    assert RESUME_HINT in stderr
    assert "stopping at the current checkpoint" in stderr

    jobs = stored_jobs(migrated_db_url, shoot)
    assert len(jobs) == 2
    for job in jobs:
        # Stopped, not failed, and its lease given back: nothing waits for it to expire.
        assert job["state"] in ("queued", "project_created", "uploading"), job
        assert job["lease_owner"] is None and job["last_error"] is None
        assert "interrupted" in [kind for kind, _ in job["events"]]

    done = finished_jobs(run_shoot(shoot, env))
    assert_exactly_once(sandbox_url, done, shoot, kills=1, files=len(files))
    shown = orchestrator("history", done[0]["id"][:8], "--json", env=env)
    kinds = [e["kind"] for e in json.loads(shown.stdout)["events"]]
    assert kinds.index("interrupted") < kinds.index("resume") < len(kinds) - 1


@pytest.mark.parametrize("db_backend", ["sqlite"])  # os._exit: no database work to compare
def test_a_second_signal_forces_the_stop_and_that_is_safe_too(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, seed=1)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)

    run = start_shoot(shoot, env, "--bwlimit", "300K")
    wait_until_uploading(run)
    run.send_signal(signal.SIGINT)
    # The first is handled within a millisecond; the clean stop then takes a few hundred.
    assert run.stderr is not None
    while "stopping at the current checkpoint" not in (line := run.stderr.readline()):
        assert line, "the run ended before handling the first signal"
    run.send_signal(signal.SIGINT)
    _, stderr = run.communicate(timeout=30)
    assert run.returncode == 130, stderr[-3000:]
    assert "forced stop" in stderr

    done = finished_jobs(run_shoot(shoot, env))
    assert_exactly_once(sandbox_url, done, shoot, kills=1, files=len(files))
