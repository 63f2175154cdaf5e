"""`orchestrator run` killed by SIGKILL at every crash point and at random instants, then resumed.

Real processes, real kills: the crash points (`ORCH_CRASH_AT=name[:n]`) make the process kill
itself at a named instant (before and after each non-idempotent call, mid-upload, mid-download,
between a download and its rename, after each checkpoint); the chaos test kills it from outside
at random moments. Each time, the same command is run again until it ends, and the sandbox's
ledger must show one project, one edit and one export per job, every output byte-identical, no
partial file left, and no more repeated uploads than kills x concurrency.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from orchestrator.workflow.pipeline import PIPELINE
from tests.helpers import cli_env, sandbox_process
from tests.resume_support import (
    assert_exactly_once,
    chaos_seed,
    finished_jobs,
    make_crash_shoot,
    run_shoot,
    start_shoot,
)

CRASH_POINTS = PIPELINE.crash_points
"""Every crash point, as the stages declare them."""
KILLED = -signal.SIGKILL


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.3") as url:
        yield url


@dataclass(frozen=True)
class PointRun:
    """One crash point's shoot: the run that was to die there, and the run that finished."""

    shoot: Path
    files: list[str]
    crashed: subprocess.CompletedProcess[str]
    resumed: subprocess.CompletedProcess[str] | None


_point_runs: dict[str, dict[str, PointRun]] = {}


def point_runs(backend: str, sandbox_url: str, db_url: str, folder: Path) -> dict[str, PointRun]:
    """Every crash point's runs on this backend, made on first use, three points at a time.

    The runs mostly wait (on Python starting, on the sandbox's edits), so running points side
    by side halves the test's time; each point has its own shoot, hence its own jobs.
    """
    if backend not in _point_runs:
        env = cli_env(f"{sandbox_url}/v1", db_url)

        def crash_then_resume(point: str) -> PointRun:
            shoot = folder / point
            files = make_crash_shoot(shoot, seed=CRASH_POINTS.index(point))
            crashed = run_shoot(shoot, {**env, "ORCH_CRASH_AT": point})
            resumed = run_shoot(shoot, env) if crashed.returncode == KILLED else None
            return PointRun(shoot, files, crashed, resumed)

        with ThreadPoolExecutor(max_workers=3) as pool:
            _point_runs[backend] = dict(
                zip(CRASH_POINTS, pool.map(crash_then_resume, CRASH_POINTS), strict=True)
            )
    return _point_runs[backend]


# One worker makes every point's runs (see point_runs) and judges them all.
@pytest.mark.xdist_group("crash-points")
@pytest.mark.parametrize("point", CRASH_POINTS)
def test_killed_at_a_crash_point_then_run_again(
    point: str,
    db_backend: str,
    sandbox_url: str,
    migrated_db_url: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    # All points share the database of the first one's test, which waits for all of them.
    run = point_runs(
        db_backend, sandbox_url, migrated_db_url, tmp_path_factory.mktemp(f"points-{db_backend}")
    )[point]
    if run.crashed.returncode == 0:
        pytest.skip(
            f"crash point {point!r} is never reached: the run ended without dying "
            "(its crash_point() call is not in the code yet)"
        )
    assert run.crashed.returncode == KILLED, run.crashed.stderr[-3000:]
    assert run.resumed is not None
    jobs = finished_jobs(run.resumed)
    assert_exactly_once(
        sandbox_url, jobs, run.shoot, kills=1, files=len(run.files), why=f"at {point}"
    )


def test_killed_after_every_checkpoint_in_turn(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    """Each run commits one state change and dies: every boundary of the job is a crash."""
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, seed=100, jpeg_only=True)
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    kills = 0
    while (
        done := run_shoot(shoot, {**env, "ORCH_CRASH_AT": "after_checkpoint"})
    ).returncode == KILLED:
        kills += 1
        assert kills < 30, "the job makes no progress between kills"
    jobs = finished_jobs(done)
    # queued -> project_created -> ... -> completed: 12 transitions, each followed by a kill.
    assert kills == 12
    assert_exactly_once(sandbox_url, jobs, shoot, kills=kills, files=len(files))


def test_killed_at_random_instants(sandbox_url: str, migrated_db_url: str, tmp_path: Path) -> None:
    """SIGKILL from outside at seeded random moments: ORCH_CHAOS_ROUNDS kills (default 6).

    A shoot is killed again and again until a run beats its kill; then it is checked and a
    fresh shoot takes the remaining kills. ORCH_CHAOS_SEED replays a failure.
    """
    rounds = int(os.environ.get("ORCH_CHAOS_ROUNDS", "6"))
    seed = chaos_seed()
    rng = random.Random(seed)
    why = f"(replay with ORCH_CHAOS_SEED={seed} ORCH_CHAOS_ROUNDS={rounds})"
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url)
    kills = shoots = 0
    shoot, files, kills_here = tmp_path / "shoot0", make_crash_shoot(tmp_path / "shoot0"), 0
    while kills < rounds:
        assert shoots <= 3 * rounds, f"no run lived long enough to be killed {why}"
        run = start_shoot(shoot, env)
        # Python takes about a second to start; the whole job a few more.
        time.sleep(rng.uniform(0.9, 2.5))
        if run.poll() is None:
            run.kill()
            run.communicate()
            kills += 1
            kills_here += 1
            continue
        stdout, stderr = run.communicate()
        done = subprocess.CompletedProcess(run.args, run.returncode, stdout, stderr)
        assert_exactly_once(
            sandbox_url,
            finished_jobs(done, why),
            shoot,
            kills=kills_here,
            files=len(files),
            why=why,
        )
        shoots += 1
        shoot = tmp_path / f"shoot{shoots}"
        files, kills_here = make_crash_shoot(shoot, seed=shoots), 0
    jobs = finished_jobs(run_shoot(shoot, env), why)
    assert_exactly_once(sandbox_url, jobs, shoot, kills=kills_here, files=len(files), why=why)
