"""Fencing at the daemon level: a daemon frozen mid-job loses its lease and cannot write after."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import (
    Daemon,
    daemon_env,
    http,
    md5_matches_ledger,
    migrated,
    wait_for,
)
from tests.helpers import ledger, orchestrator, sandbox_process

pytestmark = pytest.mark.postgres


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for daemon in started:
        daemon.stop()  # SIGKILL ends a stopped process too


def test_a_frozen_daemon_whose_lease_was_taken_over_is_refused(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    migrated(pg_url)
    # Every sandbox answer takes a second at first, so the job is surely mid-upload when the
    # first daemon is frozen (SIGSTOP: alive, holding its lease, silent).
    with sandbox_process("--edit-seconds", "0.3", "--faults", "slow=1") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            pg_url,
            ORCH_LEASE_TTL="2",
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
        )
        shoot = tmp_path / "shoot"
        shoot.mkdir()
        make_sample_shoot(shoot, raw=0, jpeg=3)
        submitted = orchestrator(
            "submit", str(shoot), "--profile", "2001", "--export", "--json", env=env
        )
        assert submitted.returncode == 0, submitted.stderr
        [job_id] = json.loads(submitted.stdout)

        frozen = Daemon(env, tmp_path, name="frozen")
        daemons.append(frozen.start())
        wait_for(
            lambda: frozen.jobs()[job_id]["state"] == "uploading",
            timeout=30,
            what="the first daemon to be uploading",
        )
        frozen.signal(signal.SIGSTOP)
        [claimed] = [
            r for r in frozen.log_records() if r["msg"] == "job claimed" and r["job_id"] == job_id
        ]
        http("PUT", f"{sandbox}/_sandbox/faults", b"{}", {"Content-Type": "application/json"})

        taker = Daemon(env, tmp_path, name="taker")
        daemons.append(taker.start())
        # Its log, not the job's lease column: the taker may finish the whole job (and release
        # the lease) between two looks.
        [took_over] = wait_for(
            lambda: [
                r
                for r in taker.log_records()
                if r["msg"] == "took over an expired lease" and r["job_id"] == job_id
            ],
            timeout=20,
            what="the second daemon to take the expired lease over",
        )
        assert f":{frozen.pid}:" in took_over["previous_owner"]
        frozen.signal(signal.SIGCONT)

        refused = wait_for(
            lambda: [r for r in frozen.log_records() if r["msg"].startswith("lease lost")],
            timeout=20,
            what="the thawed daemon to be refused",
        )
        assert refused[0]["job_id"] == job_id and refused[0]["epoch"] == claimed["epoch"]
        wait_for(
            lambda: taker.jobs()[job_id]["state"] == "completed",
            timeout=30,
            what="the second daemon to finish the job",
        )

        detail = taker.job(job_id)
        takeovers = [e for e in detail["events"] if e["kind"] == "lease"]
        assert takeovers and takeovers[0]["data"]["epoch"] > claimed["epoch"]
        assert f":{frozen.pid}:" in takeovers[0]["data"]["previous_owner"]
        # Every transition happened once: the stale worker wrote none after losing the lease.
        moves = [e["to_state"] for e in detail["events"] if e["kind"] == "transition"]
        assert len(moves) == len(set(moves)) and moves[-1] == "completed"
        [project] = ledger(sandbox)["projects"]
        assert (project["edit_requests"], project["export_requests"]) == (1, 1)
        assert md5_matches_ledger(project, detail["job"]) == 6
        assert http("GET", f"{frozen.url}/healthz")[0] == 200
