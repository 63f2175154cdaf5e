"""A stage added in one module resumes across SIGKILL at each of its checkpoints like the real ones.

The stage is `tests/extra_stage.py` (one module, one spec field, its client in
`tests/extra_stage_client.py`), inserted between the edits' download and the export; a real
process runs it and is killed at each of its checkpoints: as the job enters the stage, before
a photo's checkpoint (first and third photo), and as the job leaves it. The next run finishes
the job with every photo checked, photos already checkpointed not checked again, and every
other side effect once.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from orchestrator.workflow.journey import PIPELINE
from tests.extra_stage import CHECKSUM_PIPELINE, CHECKSUMMING, PHASE, STAGE, ChecksumDetails
from tests.extra_stage_client import LOG_ENV
from tests.helpers import cli_env, sandbox_process
from tests.resume_support import CONCURRENCY, make_crash_shoot, project_of, stored_jobs

REPO = Path(__file__).resolve().parents[2]

KILLS = [
    # (crash point, the job's state when the process died)
    ("after_checkpoint:8", CHECKSUMMING),  # entered the stage (8th committed move)
    ("after_checksum:1", CHECKSUMMING),  # first photo checked, not yet checkpointed
    ("after_checksum:3", CHECKSUMMING),  # mid-stage, some photos checkpointed
    ("after_checkpoint:9", "export_requested"),  # left the stage
]


@pytest.fixture(scope="module")
def sandbox_url() -> object:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def _run(shoot: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.extra_stage", str(shoot)],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_extra_stage_is_one_declaration_in_the_table() -> None:
    table = CHECKSUM_PIPELINE.transitions
    assert CHECKSUMMING in table.allowed("downloading_edits")
    assert {"export_requested", "completed"} <= table.allowed(CHECKSUMMING)
    assert "export_requested" in table.allowed("downloading_edits")  # skipped when not asked
    assert CHECKSUM_PIPELINE.stage_of(CHECKSUMMING) is STAGE


def test_each_point_of_the_stage_is_walked() -> None:
    walked = {point.partition(":")[0] for point, _ in KILLS}
    assert set(STAGE.crash_points) <= walked
    assert set(CHECKSUM_PIPELINE.crash_points) - set(PIPELINE.crash_points) == {"after_checksum"}


@pytest.mark.parametrize(("point", "state_at_kill"), KILLS, ids=[p for p, _ in KILLS])
def test_the_extra_stage_resumes_after_a_kill_at_each_checkpoint(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, point: str, state_at_kill: str
) -> None:
    shoot = tmp_path / "shoot"
    files = make_crash_shoot(shoot, jpeg_only=True)
    log = tmp_path / "checksums.log"
    env = cli_env(f"{sandbox_url}/v1", migrated_db_url, **{LOG_ENV: str(log)})

    killed = _run(shoot, {**env, "ORCH_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == state_at_kill
    checked_before = {name for name, p in job["photos"].items() if p.done(PHASE)}

    done = _run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "completed"
    assert all(p.done(PHASE) for p in job["photos"].values())
    for photo in job["photos"].values():
        record = photo.phase(PHASE)
        assert record is not None and record.details is not None
        assert ChecksumDetails.model_validate(record.details).checked_bytes > 0
    counts = Counter(log.read_text().split())
    assert set(counts) == set(files)
    # Checkpointed photos are never checked again; only those done but unsaved at the kill.
    assert all(counts[name] == 1 for name in checked_before)
    assert sum(counts.values()) - len(files) <= CONCURRENCY
    project = project_of(sandbox_url, job)
    assert (project["edit_requests"], project["export_requests"]) == (1, 1)
    assert all(f["uploads_completed"] == 1 for f in project["files"].values())
    moves = [message for kind, message in job["events"] if kind == "transition"]
    assert "every edit checked" in moves
