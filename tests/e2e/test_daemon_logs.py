"""At DEBUG the daemon logs its own detail, not every statement of the libraries under it."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.service.logs import configure_logging
from tests.daemon_support import Daemon, daemon_env, wait_for
from tests.helpers import orchestrator, sandbox_process


def _run_one_job(env: dict[str, str], tmp_path: Path, daemon: Daemon) -> None:
    shoot = tmp_path / "shoot"
    shoot.mkdir()
    make_sample_shoot(shoot, raw=0, jpeg=2)
    done = orchestrator("submit", str(shoot), "--profile", "2001", "--json", env=env)
    assert done.returncode == 0, done.stderr
    [job_id] = json.loads(done.stdout)
    wait_for(lambda: daemon.jobs()[job_id]["state"] == "completed", timeout=60, what="the job")


def test_debug_shows_the_daemons_detail_but_not_the_libraries(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "0.3") as sandbox:
        env = daemon_env(
            f"{sandbox}/v1", f"sqlite:///{tmp_path / 'jobs.db'}", ORCH_LOG_LEVEL="DEBUG"
        )
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())
        _run_one_job(env, tmp_path, daemon)
        assert daemon.terminate() == 0
    records = daemon.log_records()
    ours = [r for r in records if r["logger"].startswith("orchestrator")]
    theirs = [r for r in records if not r["logger"].startswith("orchestrator")]
    assert any(r["level"] == "debug" for r in ours)
    assert [r for r in theirs if r["level"] == "debug"] == []


@pytest.mark.parametrize(
    ("ours", "libraries", "shown"),
    [
        (
            "DEBUG",
            None,
            {"orchestrator.daemon: debug", "orchestrator.daemon: info", "aiosqlite: info"},
        ),
        ("WARNING", None, set()),
        ("INFO", "DEBUG", {"orchestrator.daemon: info", "aiosqlite: debug", "aiosqlite: info"}),
    ],
)
def test_library_records_stay_at_info_unless_asked(
    ours: str, libraries: str | None, shown: set[str], capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(ours, libraries)
        for name in ("orchestrator.daemon", "aiosqlite"):
            logging.getLogger(name).debug("debug")
            logging.getLogger(name).info("info")
        lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    finally:
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
        logging.getLogger("orchestrator").setLevel(logging.NOTSET)
    assert {f"{r['logger']}: {r['msg']}" for r in lines} == shown
