"""Another connection holds a SQLite file's write lock under a real daemon: /readyz says not
ready while it does (every write of the daemon's would fail), and a drive the lock broke goes
on as soon as the lock is let go, not a lease TTL later."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import Daemon, daemon_env, http, md5_matches_ledger, migrated, wait_for
from tests.helpers import ledger, orchestrator, sandbox_process


def test_readyz_goes_red_while_a_write_lock_is_held(tmp_path: Path, daemons: list[Daemon]) -> None:
    path = tmp_path / "orchestrator.db"
    db_url = migrated(f"sqlite:///{path}")
    with sandbox_process() as sandbox:
        daemon = Daemon(daemon_env(f"{sandbox}/v1", db_url), tmp_path)
        daemons.append(daemon.start())
        wait_for(lambda: http("GET", f"{daemon.url}/readyz")[0] == 200, timeout=20, what="ready")
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            _status, body = wait_for(
                lambda: (answer := http("GET", f"{daemon.url}/readyz"))[0] == 503 and answer,
                timeout=20,
                what="/readyz to say not ready",
            )
            answer = json.loads(body)
            assert answer["ready"] is False
            assert "write lock" in answer["database"]
            assert http("GET", f"{daemon.url}/healthz")[0] == 200
        finally:
            other.execute("ROLLBACK")
            other.close()
        wait_for(
            lambda: http("GET", f"{daemon.url}/readyz")[0] == 200,
            timeout=20,
            what="/readyz to be ready again",
        )
        assert daemon.alive()
        assert daemon.terminate() == 0


def test_a_drive_broken_by_a_held_write_lock_goes_on_once_it_is_let_go(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    path = tmp_path / "orchestrator.db"
    db_url = migrated(f"sqlite:///{path}")
    with sandbox_process(
        "--edit-seconds", "1", "--faults", "slow=1", "--slow-seconds", "0.3"
    ) as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            db_url,
            ORCH_LEASE_TTL="600",
            ORCH_CONCURRENCY="1",
            ORCH_POLL_INITIAL="0.5",
            ORCH_POLL_MAX="1",
        )
        shoot = tmp_path / "shoot"
        shoot.mkdir()
        make_sample_shoot(shoot, raw=0, jpeg=12)
        submitted = orchestrator("submit", str(shoot), "--profile", "2001", "--json", env=env)
        [job_id] = json.loads(submitted.stdout)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] == "uploading",
            timeout=30,
            what="the job to be uploading under the daemon's lease",
        )
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            ended = {
                "the database went away while driving the job; it goes on when it answers",
                "driving the job failed",  # how a daemon that parks it as a bug says so
            }
            # The daemon's writes wait out SQLite's busy timeout (30 s), then fail.
            wait_for(
                lambda: any(
                    r["msg"] in ended and r.get("job_id") == job_id for r in daemon.log_records()
                ),
                timeout=120,
                what="the drive to end for want of writes",
            )
        finally:
            other.execute("ROLLBACK")
            other.close()
        # Far below the lease's 600 s: the job did not wait for its own lease to run out.
        job = wait_for(
            lambda: (j := daemon.jobs()[job_id])["state"] == "completed" and j,
            timeout=120,
            what="the job to finish once the lock is let go",
        )
        assert "driving the job failed" not in [r["msg"] for r in daemon.log_records()]
        [project] = ledger(sandbox)["projects"]
        assert project["edit_requests"] == 1
        assert md5_matches_ledger(project, job) == 12
        assert daemon.alive()
        assert daemon.terminate() == 0
