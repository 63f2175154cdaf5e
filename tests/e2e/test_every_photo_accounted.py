"""Every photo of a shoot accounted for in every view, and jobs named as users name them.

Issue 24: a photo that landed in a dropped shoot after its upload was silently left out by the
daemon; refused files (an empty NEF, a JPEG named .CR2) ended in "completed", exit 0; jobs could
only be named by hex id; a completed job kept an old error; `status` could not tell a stopped
job from one being driven.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import Daemon, daemon_env, wait_for
from tests.helpers import (
    cli_env,
    ledger,
    orchestrator,
    photo_bytes,
    sandbox_process,
    status_jobs,
)


def test_photos_added_to_a_drop_after_its_upload_join_its_shoot_in_follow_ups(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Issue 24 item 1 and issue 25 item 2: a photo that lands in a drop after its upload, or
    after its jobs ended, is sent in a follow-up job of the same shoot, once."""
    drops, staged = tmp_path / "drops", tmp_path / "staged"
    drops.mkdir()
    *_, late, later = make_sample_shoot(staged / "smith", raw=0, jpeg=5)
    late = late.rename(tmp_path / late.name)  # kept back: it comes after the upload
    later = later.rename(tmp_path / later.name)  # and this one after the jobs ended
    with sandbox_process("--edit-seconds", "3") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            f"sqlite:///{tmp_path / 'orchestrator.db'}",
            ORCH_HOT_FOLDER_SETTLE="0.5",
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
        )
        daemon = Daemon(env, tmp_path, args=("--watch", str(drops), "--profile", "2001"))
        daemons.append(daemon.start())
        (staged / "smith").rename(drops / "smith")
        [job] = wait_for(
            lambda: [j for j in daemon.jobs().values() if j["done"].get("upload") == 3],
            timeout=60,
            what="the drop's three photos to be uploaded",
        )
        shutil.copy(late, drops / "smith" / late.name)

        def ended(count: int) -> list[dict[str, Any]] | None:
            jobs = list(daemon.jobs().values())
            finished = len(jobs) == count and all(j["state"] == "completed" for j in jobs)
            return jobs if finished else None

        jobs = wait_for(lambda: ended(2), timeout=90, what="the follow-up to complete")
        shutil.copy(later, drops / "smith" / later.name)
        jobs = wait_for(lambda: ended(3), timeout=90, what="the second follow-up to complete")
        assert sorted(j["photos"] for j in jobs) == [1, 1, 3]
        assert all(j["left_out"] == 0 for j in jobs)
        assert {j["shoot_id"] for j in jobs} == {job["shoot_id"]}
        uploads: dict[str, int] = {}
        for project in ledger(sandbox)["projects"]:
            assert project["edit_requests"] == 1
            for name, file in project["files"].items():
                uploads[name] = uploads.get(name, 0) + file["uploads_completed"]
        assert uploads == {name: 1 for name in uploads} and len(uploads) == 5
        # The daemon's log says it where an operator watching it looks.
        assert any(
            late.name in record["msg"] and "follow-up" in record["msg"]
            for record in daemon.log_records()
        ), daemon.logs()[-3000:]

    [shoot] = json.loads(orchestrator("status", "--json", env=env).stdout)
    assert (shoot["name"], shoot["photos"], shoot["state"]) == ("smith", 5, "completed")
    assert len(shoot["jobs"]) == 3
    history = json.loads(orchestrator("history", "smith", "--json", env=env).stdout)
    assert {event["job"] for event in history["events"]} == {j["id"] for j in shoot["jobs"]}


def test_refused_files_end_the_run_with_exit_3_and_are_listed(tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    (shoot / "DSC_0001.NEF").write_bytes(b"")  # a card read that went wrong
    (shoot / "IMG_0009.CR2").write_bytes(photo_bytes("x.jpg", b"j" * 200))  # a JPEG, renamed
    with sandbox_process("--edit-seconds", "0.3") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        ran = orchestrator("run", str(shoot), "--profile", "2001", env=env)
        assert ran.returncode == 3, ran.stderr[-3000:]
        assert "completed, 2 refused" in ran.stdout
        assert "refused DSC_0001.NEF: empty (0 bytes)" in ran.stdout
        assert "refused IMG_0009.CR2: its content is not a CR2 photo but a JPEG" in ran.stdout

        again = orchestrator("run", str(shoot), "--json", env=env)
        assert again.returncode == 3, again.stderr[-3000:]
        [job] = json.loads(again.stdout)
        assert (job["state"], job["refused"], job["left_out"], job["failed"]) == (
            "completed",
            2,
            0,
            0,
        )
        assert sorted((p["path"], p["outcome"]) for p in job["failed_photos"]) == [
            ("DSC_0001.NEF", "refused"),
            ("IMG_0009.CR2", "refused"),
        ]
        status = orchestrator("status", "--json", env=env)
        [listed] = json.loads(status.stdout)
        assert (listed["refused"], listed["state_text"]) == (2, "completed, 2 refused")


def test_a_job_is_named_by_its_id_name_or_folder(tmp_path: Path) -> None:
    smith, mixed = tmp_path / "smith-wedding", tmp_path / "mixed"
    make_sample_shoot(smith, raw=0, jpeg=1)
    make_sample_shoot(mixed, raw=1, jpeg=1)
    with sandbox_process("--edit-seconds", "0.3") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        for folder in (smith, mixed):
            ran = orchestrator("run", str(folder), "-p", "1001", "-p", "2001", env=env)
            assert ran.returncode == 0, ran.stderr[-3000:]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "orchestrator", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    [shoot] = json.loads(cli("status", "smith-wedding", "--json").stdout)
    [job] = shoot["jobs"]
    assert shoot["source"] == job["source"] == str(smith.resolve())
    by_folder = cli("history", "./smith-wedding", "--json")
    assert by_folder.returncode == 0, by_folder.stderr
    assert json.loads(by_folder.stdout)["job"]["id"] == job["id"]
    assert json.loads(cli("status", job["id"][:6], "--json").stdout)[0]["id"] == shoot["id"]
    assert json.loads(cli("status", shoot["id"][:6], "--json").stdout)[0]["id"] == shoot["id"]

    # A folder of two image types is one shoot of two jobs: its name names the shoot.
    [mixed_shoot] = json.loads(cli("status", "mixed", "--json").stdout)
    both = {j["name"]: j["id"] for j in mixed_shoot["jobs"]}
    assert sorted(both) == ["mixed (JPG)", "mixed (RAW)"]
    whole = json.loads(cli("history", "mixed", "--json").stdout)
    assert (whole["shoot"]["id"], whole["job"]) == (mixed_shoot["id"], None)
    assert {e["job"] for e in whole["events"]} == set(both.values())
    named = cli("history", "mixed (RAW)", "--json")
    assert json.loads(named.stdout)["job"]["id"] == both["mixed (RAW)"]
    assert json.loads(named.stdout)["shoot"]["id"] == mixed_shoot["id"]
    unknown = cli("status", "nobody")
    assert unknown.returncode == 2 and "no job has the id, name or folder" in unknown.stderr


def test_status_tells_a_running_job_from_a_stopped_one(tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    with sandbox_process("--edit-seconds", "600") as sandbox:
        env = cli_env(f"{sandbox}/v1", f"sqlite:///{tmp_path / 'orchestrator.db'}")
        run = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "run", str(shoot), "-p", "2001"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:

            def editing() -> dict[str, object] | None:
                return next((j for j in status_jobs(env) if j["state"] == "editing"), None)

            job = wait_for(editing, timeout=60, what="the run to wait for its edit")
            assert job["activity"] == "running"
            assert job["state_text"] == f"editing, running (by {job['lease_owner']})"
            assert f":{run.pid}:" in str(job["lease_owner"])
            table = orchestrator("status", env=env).stdout
            assert f"editing, running (by {job['lease_owner']})" in table
        finally:
            os.kill(run.pid, signal.SIGKILL)
            run.wait(timeout=10)
        [after] = status_jobs(env)
        assert (after["activity"], after["state_text"]) == ("stopped", "editing, stopped")
        assert "editing, stopped" in orchestrator("status", env=env).stdout
