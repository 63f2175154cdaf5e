"""Issue 15 item 17: under a bandwidth cap the transfers finish one after another, and the first
Ctrl-C lets the ones in flight finish (a few seconds at most) before the command stops."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.transfer.manager import (
    Transfers,
    TransferSettings,
    concurrency_under_cap,
    make_session,
)
from tests.helpers import cli_env, sandbox_process
from tests.resume_support import stored_jobs

PHOTO = 3_000_000


def test_a_bandwidth_cap_lowers_the_transfers_at_once() -> None:
    assert concurrency_under_cap(8, None) == 8
    assert concurrency_under_cap(8, 5_000_000) == 2
    assert concurrency_under_cap(8, 100_000_000) == 8
    assert concurrency_under_cap(8, 500_000) == 1


async def test_the_transfers_limiter_follows_the_cap() -> None:
    session = make_session(TransferSettings())
    try:
        capped = Transfers(session, TransferSettings(concurrency=8, bwlimit=5_000_000))
        assert capped.limiter.limit == 2
    finally:
        await session.close()


def test_the_first_interrupt_lets_the_upload_in_flight_finish(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=6, jpeg=0, raw_size=PHOTO)
    with sandbox_process("--edit-seconds", "30") as url:
        env = cli_env(f"{url}/v1", migrated_db_url)
        run = subprocess.Popen(
            [
                *(sys.executable, "-m", "orchestrator", "run", str(shoot), "-p", "1001"),
                *("--bwlimit", "2M", "--concurrency", "8", "--json"),
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert run.stderr is not None
        # Wait until the first photo is half sent (JSON progress comes once a second).
        while True:
            line = run.stderr.readline()
            assert line, f"the run ended early (exit {run.wait()})"
            if line.startswith("{"):
                event = json.loads(line)
                if event["stage"] == "upload" and (event["bytes_done"] or 0) >= PHOTO // 2:
                    break
        run.send_signal(signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    assert run.returncode == 130, stderr
    assert "letting transfers in flight finish" in stderr
    [job] = stored_jobs(migrated_db_url, shoot)
    uploaded = [p for p in job["photos"].values() if p.done("upload")]
    # The photo in flight finished; the command did not wait for the rest of the upload.
    assert 0 < len(uploaded) < len(job["photos"]), len(uploaded)
