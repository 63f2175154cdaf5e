"""A real daemon on SQLite says not ready while another connection holds the write lock (every
write of its would fail), and ready again once the lock is let go."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.daemon_support import Daemon, daemon_env, http, migrated, wait_for
from tests.helpers import sandbox_process


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
