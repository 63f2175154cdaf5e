"""What a command loads before it does anything: the quick ones stay quick (issue 16).

Speed itself is measured by `benchmarks/speed.py`, never asserted here; what is asserted is the
cause of slowness that creeps back unnoticed: a quick command importing a heavy stack it does
not use (aiohttp costs ~0.13 s, Alembic with Mako ~0.2 s, SQLAlchemy's ORM ~0.2 s; on SQLite,
asyncpg and SQLAlchemy's Postgres dialect ~0.03 s and 5 MB, Pillow 0.01 s and 3 MB).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.daemon_support import daemon_env, free_port, http, migrated, wait_for

PROBE = """
import json, runpy, sys
sys.argv = ["orchestrator", *sys.argv[1:]]
try:
    runpy.run_module("orchestrator", run_name="__main__")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
loaded = sorted(sys.modules)
print(json.dumps({"code": code, "loaded": loaded}), file=sys.stderr)
"""


def loaded_by(tmp_path: Path, *args: str) -> set[str]:
    """The modules `orchestrator ARGS…` had imported when it exited (exit 0)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))}
    env.update(ORCH_CONFIG=os.devnull, ORCH_DATABASE_URL=f"sqlite:///{tmp_path / 'jobs.db'}")
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    report = json.loads(result.stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), result.stderr
    return set(report["loaded"])


def test_help_loads_no_database_or_http_stack(tmp_path: Path) -> None:
    loaded = loaded_by(tmp_path, "--help")

    assert not loaded & {"aiohttp", "sqlalchemy", "alembic", "aiosqlite", "asyncpg", "PIL"}


@pytest.mark.parametrize("args", [("status",), ("status", "--json")])
def test_reading_commands_load_only_what_they_use(tmp_path: Path, args: tuple[str, ...]) -> None:
    # The first `status` builds the SQLite schema (Alembic runs); the second finds it current.
    migrating = loaded_by(tmp_path, "status")
    loaded = loaded_by(tmp_path, *args)

    assert "alembic" in migrating and "pygments" not in migrating  # Mako's error colouring

    assert not loaded & {"aiohttp", "aiolimiter", "alembic", "mako", "jinja2"}
    # On SQLite: no Postgres driver or dialect, and no Pillow (tagging alone uses it).
    assert not loaded & {"asyncpg", "sqlalchemy.dialects.postgresql", "PIL"}


def test_the_daemon_on_sqlite_loads_no_postgres_driver(tmp_path: Path) -> None:
    # A schema already current, as on every start but the first (a first one migrates, and
    # Alembic's own Postgres module loads the dialect then).
    db_url = migrated(f"sqlite:///{tmp_path / 'jobs.db'}")
    port = free_port()
    env = daemon_env(f"http://127.0.0.1:{free_port()}/v1", db_url)
    log = tmp_path / "daemon.log"  # a file, not a pipe: its log lines can never block it
    with log.open("w") as stderr_file:
        daemon = subprocess.Popen(
            [sys.executable, "-c", PROBE, "daemon", "--listen", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
        )
    try:
        wait_for(
            lambda: daemon.poll() is not None or http("GET", f"http://127.0.0.1:{port}/healthz")[0],
            timeout=60,
            what="the daemon to answer /healthz",
        )
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=60)
    finally:
        daemon.kill()
    stderr = log.read_text()
    report = json.loads(stderr.strip().splitlines()[-1])
    assert report["code"] in (0, None), stderr[-3000:]
    loaded = set(report["loaded"])

    assert "aiohttp.web" in loaded  # it did serve
    assert not loaded & {"asyncpg", "sqlalchemy.dialects.postgresql", "PIL"}
