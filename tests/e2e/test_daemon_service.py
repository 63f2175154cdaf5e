"""`orchestrator submit` + `orchestrator daemon` as real processes, with a sandbox on a port."""

from __future__ import annotations

import json
import shutil
import signal
from datetime import datetime
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import (
    Daemon,
    all_in,
    daemon_env,
    get_json,
    http,
    md5_matches_ledger,
    migrated,
    wait_for,
)
from tests.helpers import ledger, orchestrator, sandbox_process, status_jobs

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"
TERMINAL = {"completed", "failed", "cancelled"}


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file for the tests whose point does not depend on the backend."""
    return f"sqlite:///{tmp_path / 'orchestrator.db'}"


def _shoot(base: Path, name: str, *, raw: int = 0, jpeg: int = 2) -> Path:
    shoot = base / name
    shoot.mkdir()
    make_sample_shoot(shoot, raw=raw, jpeg=jpeg)
    return shoot


def _submit(
    shoot: Path, env: dict[str, str], *profiles: str, export: bool = True, add: bool = False
) -> list[str]:
    args = [arg for p in profiles for arg in ("--profile", p)] + (["--add"] if add else [])
    done = orchestrator(
        "submit", str(shoot), *args, *(["--export"] if export else []), "--json", env=env
    )
    assert done.returncode == 0, done.stderr
    ids: list[str] = json.loads(done.stdout)
    return ids


def _logged(daemon: Daemon, message: str, job_id: str) -> int:
    """How many of the daemon's log lines say `message` about the job."""
    return sum(1 for r in daemon.log_records() if r["msg"] == message and r.get("job_id") == job_id)


def _at(event: dict[str, str]) -> datetime:
    return datetime.fromisoformat(event["at"])


def test_submitted_jobs_run_to_the_end_and_operators_see_them(
    migrated_db_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "0.5") as sandbox:
        env = daemon_env(f"{sandbox}/v1", migrated_db_url)
        shoot = _shoot(tmp_path, "wedding", raw=3, jpeg=2)
        ids = _submit(shoot, env, RAW_PROFILE, JPEG_PROFILE)
        assert len(ids) == 2
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())

        jobs = wait_for(
            lambda: (j := daemon.jobs()) and all_in(j, ids, TERMINAL) and j,
            timeout=60,
            what="both jobs to finish",
        )
        assert {jobs[i]["state"] for i in ids} == {"completed"}
        projects = {p["project_uuid"]: p for p in ledger(sandbox)["projects"]}
        assert len(projects) == 2
        for job_id in ids:
            project = projects[jobs[job_id]["project_uuid"]]
            assert (project["edit_requests"], project["export_requests"]) == (1, 1)
            assert all(f["uploads_completed"] == 1 for f in project["files"].values())
            assert md5_matches_ledger(project, jobs[job_id]) == 2 * len(project["files"])

        # The daemon's own views and the operator commands see the same database.
        detail = daemon.job(ids[0][:8])
        assert detail["job"]["id"] == ids[0] and detail["job"]["photos"] in (2, 3)
        kinds = [e["kind"] for e in detail["events"]]
        assert "callback" in kinds
        assert http("GET", f"{daemon.url}/api/jobs/ffffffff")[0] == 404
        assert get_json(f"{daemon.url}/readyz")["ready"] is True
        status = status_jobs(env)
        assert {j["id"]: j["state"] for j in status} == {i: "completed" for i in ids}
        assert all(j["lease_owner"] is None for j in status)
        metrics = http("GET", f"{daemon.url}/metrics")[1].decode()
        assert 'orchestrator_jobs{state="completed"} 2.0' in metrics
        assert 'orchestrator_callbacks_total{outcome="accepted"}' in metrics
        assert 'orchestrator_transfers_total{stage="upload"} 5.0' in metrics

        # Submitting the folder again gives the same jobs back and sends nothing.
        assert sorted(_submit(shoot, env, RAW_PROFILE, JPEG_PROFILE)) == sorted(ids)
        assert daemon.terminate() == 0
        again = {p["project_uuid"]: p for p in ledger(sandbox)["projects"]}
        assert {u: p["edit_requests"] for u, p in again.items()} == {u: 1 for u in projects}
    assert "test-key-0123456789" not in daemon.logs()


def test_a_second_card_submitted_with_add_is_a_follow_up_the_daemon_edits_alone(
    sqlite_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = daemon_env(f"{sandbox}/v1", migrated(sqlite_url))
        shoot = _shoot(tmp_path, "wedding", jpeg=2)
        [first] = _submit(shoot, env, JPEG_PROFILE)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        wait_for(lambda: all_in(daemon.jobs(), [first], TERMINAL), timeout=60, what="the job")
        card = shoot / "Card 2"
        card.mkdir()
        [made] = make_sample_shoot(card, raw=0, jpeg=1, seed=7)
        late = made.rename(card / "IMG_9001.jpg")

        both = _submit(shoot, env, JPEG_PROFILE, add=True)
        assert len(both) == 2 and first in both
        [follow_up] = [job_id for job_id in both if job_id != first]
        jobs = wait_for(
            lambda: (j := daemon.jobs()) and all_in(j, both, TERMINAL) and j,
            timeout=60,
            what="the follow-up to finish",
        )
        assert {jobs[i]["state"] for i in both} == {"completed"}
        projects = {p["project_uuid"]: p for p in ledger(sandbox)["projects"]}
        assert len(projects) == 2
        sent = projects[jobs[follow_up]["project_uuid"]]
        assert list(sent["files"]) == [late.name] and sent["edit_requests"] == 1
        assert projects[jobs[first]["project_uuid"]]["edit_requests"] == 1
        [listed] = json.loads(orchestrator("status", str(shoot), "--json", env=env).stdout)
        assert {j["id"] for j in listed["jobs"]} == set(both) and listed["photos"] == 3
        # Submitted again with --add and nothing new: the same jobs, nothing sent.
        assert sorted(_submit(shoot, env, JPEG_PROFILE, add=True)) == sorted(both)
        assert orchestrator("submit", str(shoot), "--add", "--again", env=env).returncode == 2
        assert len(ledger(sandbox)["projects"]) == 2


@pytest.mark.postgres
def test_a_callback_wakes_a_waiting_job_at_once_on_any_daemon(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    # Polls are a minute apart, so only a callback can move a job on within the test. Both
    # daemons give Imagen the first one's URL, as they would a balancer's: whichever daemon
    # receives a callback, whichever is free takes the job (in-process wake-up or NOTIFY).
    migrated(pg_url)
    with sandbox_process("--edit-seconds", "1") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1", pg_url, ORCH_POLL_INITIAL="60", ORCH_POLL_MAX="60", ORCH_MAX_JOBS="2"
        )
        first = Daemon(env, tmp_path, name="first")
        second = Daemon(env, tmp_path, name="second", public_url=first.url)
        daemons.extend([first.start(), second.start()])
        ids = [
            job_id
            for n in range(4)
            for job_id in _submit(_shoot(tmp_path, f"s{n}"), env, JPEG_PROFILE, export=False)
        ]
        jobs = wait_for(
            lambda: (j := first.jobs()) and all_in(j, ids, TERMINAL) and j,
            timeout=40,
            what="every job to finish",
        )
        assert {jobs[i]["state"] for i in ids} == {"completed"}
        latencies = []
        for job_id in ids:
            events = first.job(job_id)["events"]
            callback = next(e for e in events if e["kind"] == "callback")
            moved = next(e for e in events if e["to_state"] == "downloading_edits")
            latencies.append((_at(moved) - _at(callback)).total_seconds())
        # Polls are 60 s apart: seconds prove the callback moved each job, and leave room
        # for a busy machine (under a second when quiet).
        assert max(latencies) < 5, latencies
        assert not [r for r in second.log_records() if r["msg"] == "callback received"]


def test_with_every_callback_lost_polling_finishes_the_job(
    sqlite_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "0.5", "--faults", "lose_callback=1") as sandbox:
        env = daemon_env(f"{sandbox}/v1", sqlite_url, ORCH_POLL_INITIAL="0.3", ORCH_POLL_MAX="0.5")
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        [job_id] = _submit(_shoot(tmp_path, "lost"), env, JPEG_PROFILE)
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] in TERMINAL, timeout=30, what="the job to finish"
        )
        detail = daemon.job(job_id)
        assert detail["job"]["state"] == "completed"
        assert not [e for e in detail["events"] if e["kind"] == "callback"]
        [project] = ledger(sandbox)["projects"]
        assert (project["edit_requests"], project["export_requests"]) == (1, 1)


def test_a_waiting_job_holds_no_lease_and_cancel_stops_it(
    sqlite_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "30") as sandbox:
        env = daemon_env(f"{sandbox}/v1", sqlite_url, ORCH_POLL_INITIAL="30", ORCH_POLL_MAX="30")
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        [job_id] = _submit(_shoot(tmp_path, "slow"), env, JPEG_PROFILE)
        # The job is "editing" from the moment Imagen accepts the edit, while its drive still
        # holds the lease to poll once; the drive then parks it and gives the lease back.
        # Waiting for the parking's log line (written after the release) rather than the
        # state makes this independent of how busy the machine is.
        wait_for(
            lambda: _logged(daemon, "job waits for Imagen", job_id),
            timeout=30,
            what="the job to be parked until its edit is done",
        )
        waiting = daemon.jobs()[job_id]
        assert waiting["state"] == "editing"
        assert waiting["lease_owner"] is None
        # The drive's slot is freed right after; the edit takes 30 s and the next poll is as
        # far off, so nothing claims the job again meanwhile.
        wait_for(
            lambda: (
                "orchestrator_jobs_in_progress 0.0"
                in http("GET", f"{daemon.url}/metrics")[1].decode()
            ),
            timeout=10,
            what="the slot to be free",
        )
        assert daemon.jobs()[job_id]["lease_owner"] is None
        assert _logged(daemon, "job claimed", job_id) == 1

        cancelled = orchestrator("cancel", job_id[:8], "--json", env=env)
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["state"] == "cancelled"
        assert daemon.terminate() == 0
        assert [j["state"] for j in status_jobs(env)] == ["cancelled"]


@pytest.mark.postgres
def test_sigterm_stops_at_a_checkpoint_and_gives_the_lease_back(
    pg_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    migrated(pg_url)
    with sandbox_process("--edit-seconds", "0.3", "--faults", "slow=0.5") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            pg_url,
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
            ORCH_CONCURRENCY="2",
            ORCH_LEASE_TTL="60",
        )
        [job_id] = _submit(_shoot(tmp_path, "big", jpeg=8), env, JPEG_PROFILE)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] == "uploading",
            timeout=30,
            what="the upload to start",
        )
        assert daemon.terminate(timeout=15) == 0
        status = {j["id"]: j for j in status_jobs(env)}
        # The lease lasts a minute, yet it is free at once: a new daemon need not wait.
        assert status[job_id]["lease_owner"] is None
        assert status[job_id]["state"] not in TERMINAL

        http("PUT", f"{sandbox}/_sandbox/faults", b"{}", {"Content-Type": "application/json"})
        daemon.start()
        wait_for(
            lambda: daemon.jobs()[job_id]["state"] in TERMINAL,
            timeout=40,
            what="the job to finish after the restart",
        )
        assert daemon.jobs()[job_id]["state"] == "completed"
        [project] = ledger(sandbox)["projects"]
        assert project["edit_requests"] == 1
    assert "drives stopped and leases released" in daemon.logs()


def test_bad_input_is_recorded_on_the_job_and_the_daemon_stays_up(
    sqlite_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    good_key = "the-right-key-0123456789"
    with sandbox_process("--edit-seconds", "0.3", "--api-key", good_key) as sandbox:
        good = daemon_env(
            f"{sandbox}/v1",
            sqlite_url,
            IMAGEN_API_KEY=good_key,
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
        )
        vanished = _shoot(tmp_path, "vanished")
        [vanished_id] = _submit(vanished, good, JPEG_PROFILE)
        shutil.rmtree(vanished)
        [refused_id] = _submit(_shoot(tmp_path, "refused"), good, JPEG_PROFILE)

        # A daemon whose key Imagen refuses: the jobs say why, nothing is lost, it stays up.
        wrong = Daemon(
            {**good, "IMAGEN_API_KEY": "a-revoked-key-000000000"}, tmp_path, name="wrong-key"
        )
        daemons.append(wrong.start())
        parked = wait_for(
            lambda: (j := wrong.jobs()[refused_id])["last_error"] and j,
            timeout=20,
            what="the refused key to be recorded",
        )
        assert "API key" in parked["last_error"] and parked["state"] == "queued"
        assert http("GET", f"{wrong.url}/healthz")[0] == 200
        assert wrong.terminate() == 0
        assert "a-revoked-key" not in wrong.logs()

        daemon = Daemon(good, tmp_path)
        daemons.append(daemon.start())
        jobs = wait_for(
            lambda: (j := daemon.jobs()) and all_in(j, [vanished_id, refused_id], TERMINAL) and j,
            timeout=30,
            what="both jobs",
        )
        assert jobs[refused_id]["state"] == "completed"
        assert jobs[vanished_id]["state"] == "failed"
        assert jobs[vanished_id]["last_error"]
        assert http("GET", f"{daemon.url}/healthz")[0] == 200
        daemon.signal(signal.SIGTERM)
