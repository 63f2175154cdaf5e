"""Hot folders with a daemon process: a drop becomes one job once it has settled, never twice."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from pathlib import Path

from orchestrator.sandbox.samples import make_sample_shoot
from tests.daemon_support import Daemon, daemon_env, md5_matches_ledger, wait_for
from tests.helpers import ledger, sandbox_process

SETTLE = 4.0
"""Long against the copy's gaps (GAP), so a busy machine's stall cannot settle a drop early."""
GAP = 0.2


def test_a_settled_drop_becomes_one_job_and_bad_drops_are_skipped(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    drops = tmp_path / "drops"  # created only later: a missing folder must not stop the watch
    staged = tmp_path / "staged"
    staged.mkdir()
    make_sample_shoot(staged, raw=0, jpeg=3)
    with sandbox_process("--edit-seconds", "0.3") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            f"sqlite:///{tmp_path / 'orchestrator.db'}",
            ORCH_HOT_FOLDER_SETTLE=str(SETTLE),
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
        )
        args = ("--watch", str(drops), "--profile", "2001", "--export")
        daemon = Daemon(env, tmp_path, args=args)
        daemons.append(daemon.start())
        wait_for(
            lambda: "watched folder unreadable" in daemon.logs(),
            timeout=15,
            what="the daemon to look at the missing watched folder",
        )
        drops.mkdir()
        (drops / "notes").mkdir()
        (drops / "notes" / "readme.txt").write_text("no photos here")
        vanishing = drops / "vanishing"
        vanishing.mkdir()
        shutil.copy(next(staged.iterdir()), vanishing)

        # A slow copy: every gap is shorter than the settle time, so no job starts early.
        shoot = drops / "smith"
        shoot.mkdir()
        for photo in sorted(staged.iterdir()):
            shutil.copy(photo, shoot)
            time.sleep(GAP)
            # Gone before it settled (a drop moved elsewhere): nothing may come of it.
            shutil.rmtree(vanishing, ignore_errors=True)
        last_change = max(p.stat().st_mtime for p in shoot.iterdir())

        [job] = wait_for(
            lambda: list(daemon.jobs().values()), timeout=15, what="the drop to become a job"
        )
        assert job["source"] == str(shoot.resolve()) and job["photos"] == 3
        # Not early: the job was made a whole settle time after the copy's last change (a
        # lower bound, which a busy machine, only ever later, cannot break).
        created = datetime.fromisoformat(job["created_at"]).timestamp()
        assert created - last_change >= SETTLE, created - last_change
        wait_for(
            lambda: daemon.jobs()[job["id"]]["state"] == "completed",
            timeout=30,
            what="the dropped shoot to be done",
        )
        assert daemon.terminate() == 0

        # A restart looks at every drop again and submits none of them twice. The folder
        # without photos is refused once per run, in the same scan that finds the settled
        # shoot already submitted: waiting for that line (not for a time) makes this look
        # happen before the check.
        daemon.start()
        wait_for(
            lambda: daemon.logs().count("drop refused") == 2,
            timeout=30,
            what="the restarted daemon to look at the settled drops",
        )
        assert list(daemon.jobs()) == [job["id"]]
        # The refusal is where operators look, not only in the log (issue 15 item 16).
        refused = [e for e in daemon.listed() if e["state"] == "refused"]
        assert [(e["name"], e["source"]) for e in refused] == [
            ("notes", str((drops / "notes").resolve()))
        ]
        assert "no supported photos" in refused[0]["last_error"]
        [project] = ledger(sandbox)["projects"]
        assert (project["edit_requests"], project["export_requests"]) == (1, 1)
        assert md5_matches_ledger(project, daemon.jobs()[job["id"]]) == 6


def test_watch_takes_the_layout_options_of_run(tmp_path: Path, daemons: list[Daemon]) -> None:
    # Two camera bodies' cards, each with its own IMG_0001.CR2: sendable only prefixed.
    drops = tmp_path / "drops"
    staged = tmp_path / "staged"
    for number in (1, 2):
        make_sample_shoot(staged / f"Card {number}", raw=1, jpeg=0, seed=number)
    with sandbox_process("--edit-seconds", "0.3") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1",
            f"sqlite:///{tmp_path / 'orchestrator.db'}",
            ORCH_HOT_FOLDER_SETTLE="0.5",
            ORCH_POLL_INITIAL="0.3",
            ORCH_POLL_MAX="0.5",
        )
        args = (
            *("--watch", str(drops), "--profile", "1001"),
            *("--prefix-subfolders", "--sidecars", "beside"),
        )
        daemon = Daemon(env, tmp_path, args=args)
        daemons.append(daemon.start())
        drops.mkdir()
        staged.rename(drops / "wedding")  # whole at once: the short settle cannot split it

        [job] = wait_for(
            lambda: list(daemon.jobs().values()), timeout=30, what="the drop to become a job"
        )
        wait_for(
            lambda: daemon.jobs()[job["id"]]["state"] == "completed",
            timeout=60,
            what="the dropped shoot to be done",
        )
        [project] = ledger(sandbox)["projects"]
    assert sorted(project["files"]) == ["Card 1_IMG_0001.CR2", "Card 2_IMG_0001.CR2"]
    shoot = drops / "wedding"
    # The sidecars came back to each photo's own name and place, beside the RAWs.
    assert sorted(p.relative_to(shoot).as_posix() for p in shoot.rglob("*.xmp")) == [
        "Card 1/IMG_0001.xmp",
        "Card 2/IMG_0001.xmp",
    ]
