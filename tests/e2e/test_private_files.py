"""The job database, its WAL files, the daemon's lock file and the data folder are owner-only."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon_support import Daemon, daemon_env
from tests.helpers import cli_env, orchestrator


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems have, under which files are created world-readable."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def test_the_default_database_and_its_folder_are_created_private(tmp_path: Path) -> None:
    env = cli_env("http://127.0.0.1:9/v1", "unused", XDG_DATA_HOME=str(tmp_path / "data"))
    del env["ORCH_DATABASE_URL"]
    done = orchestrator("status", env=env)
    assert done.returncode == 0, done.stderr
    folder = tmp_path / "data" / "orchestrator"
    files = sorted(folder.iterdir())
    assert folder / "orchestrator.db" in files
    assert _mode(folder) == 0o700
    assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}


def test_an_existing_default_folder_is_made_private(tmp_path: Path) -> None:
    folder = tmp_path / "data" / "orchestrator"
    folder.mkdir(parents=True, mode=0o755)
    env = cli_env("http://127.0.0.1:9/v1", "unused", XDG_DATA_HOME=str(tmp_path / "data"))
    del env["ORCH_DATABASE_URL"]
    assert orchestrator("status", env=env).returncode == 0
    assert _mode(folder) == 0o700


def test_the_daemons_database_and_lock_file_are_private(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    database = tmp_path / "new-folder" / "jobs.db"
    daemon = Daemon(daemon_env("http://127.0.0.1:9/v1", f"sqlite:///{database}"), tmp_path)
    daemons.append(daemon.start())
    # The -wal and -shm files exist while a connection is open (SQLite's own, here).
    with contextlib.closing(sqlite3.connect(database)) as connection:
        connection.execute("SELECT count(*) FROM jobs").fetchall()
        modes = {p.name: _mode(p) for p in database.parent.iterdir()}
    assert set(modes) == {"jobs.db", "jobs.db-wal", "jobs.db-shm", "jobs.db.daemon-lock"}
    assert modes == dict.fromkeys(modes, 0o600)
    assert _mode(database.parent) == 0o700
