"""Helpers for the daemon tests: daemons as real processes on real ports, and their HTTP side."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from orchestrator.store.migrate import upgrade
from tests.helpers import cli_env

T = TypeVar("T")

DAEMON_ENV = {
    "ORCH_LEASE_TTL": "3",
    "ORCH_SCHEDULER_IDLE": "0.5",
    "ORCH_PAUSE_RETRY": "1",
    "ORCH_HOT_FOLDER_SCAN": "0.2",
    "ORCH_LOG_LEVEL": "INFO",
}
"""Fast pacing for tests: short leases, short idle sleeps, quick retries."""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def migrated(db_url: str) -> str:
    """The URL, after migrating its database to the newest schema (as `db upgrade` does)."""
    asyncio.run(upgrade(db_url))
    return db_url


def daemon_env(api_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """The CLI environment plus the daemon's fast test pacing."""
    return cli_env(api_url, db_url, **{**DAEMON_ENV, **extra})


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, interval: float = 0.1, what: str = "condition"
) -> T:
    """Call `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def http(
    method: str, url: str, body: bytes | None = None, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    """One HTTP request; (status, body) for any answer, (0, b"") if nobody answered."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, b""


def get_json(url: str) -> Any:
    """GET a JSON document (raises on a non-200 answer)."""
    status, body = http("GET", url)
    if status != 200:
        raise AssertionError(f"GET {url} answered {status}: {body[:200]!r}")
    return json.loads(body)


class Daemon:
    """`orchestrator daemon` as a real process on a fixed port, restartable after a kill."""

    def __init__(
        self,
        env: Mapping[str, str],
        log_dir: Path,
        *,
        name: str = "daemon",
        args: tuple[str, ...] = (),
        public_url: str | None = None,
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.public_url = public_url or self.url
        self.env = dict(env)
        self.args = args
        self.name = name
        self.log_dir = log_dir
        self.proc: subprocess.Popen[str] | None = None
        self.starts = 0

    @property
    def stderr_path(self) -> Path:
        """Where every incarnation's logs go (appended)."""
        return self.log_dir / f"{self.name}.log"

    def start(self, *, wait: bool = True) -> Daemon:
        """Start the process; with `wait`, until /healthz answers."""
        self.starts += 1
        with self.stderr_path.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    "daemon",
                    "--listen",
                    f"127.0.0.1:{self.port}",
                    "--public-url",
                    self.public_url,
                    *self.args,
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        if wait:
            wait_for(self._healthy, timeout=30, what=f"{self.name} to answer /healthz")
        return self

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(
                f"{self.name} exited with {self.proc.returncode}:\n{self.logs()[-3000:]}"
            )
        return http("GET", f"{self.url}/healthz")[0] == 200

    @property
    def pid(self) -> int:
        """The running process' id."""
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process runs."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a power cut or the OOM killer would."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(timeout=10)

    def signal(self, signum: signal.Signals) -> None:
        """Send a signal (SIGSTOP/SIGCONT to freeze and thaw it)."""
        assert self.proc is not None
        os.kill(self.proc.pid, signum)

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM and wait for the exit code."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Make sure the process is gone (test teardown)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def logs(self) -> str:
        """Everything the daemon logged so far."""
        return self.stderr_path.read_text() if self.stderr_path.exists() else ""

    def log_records(self) -> list[dict[str, Any]]:
        """The daemon's JSON log lines, parsed (not a last line it is still writing)."""
        records = []
        for line in self.logs().splitlines(keepends=True):
            if line.startswith("{") and line.endswith("\n"):
                records.append(json.loads(line))
        return records

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every job by id, from /api/jobs (without the refused drops it lists too)."""
        return {job["id"]: job for job in self.listed() if job["state"] != "refused"}

    def listed(self) -> list[dict[str, Any]]:
        """Everything /api/jobs lists: the refused drops, then every job, page by page."""
        page = get_json(f"{self.url}/api/jobs?limit=1000")
        found: list[dict[str, Any]] = [*page["refused"], *page["jobs"]]
        while page["next"] is not None:
            page = get_json(f"{self.url}/api/jobs?limit=1000&cursor={page['next']}")
            found += page["jobs"]
        return found

    def job(self, job_id: str) -> dict[str, Any]:
        """One job and its history, from /api/jobs/{id}."""
        found: dict[str, Any] = get_json(f"{self.url}/api/jobs/{job_id}")
        return found


def all_in(jobs: Mapping[str, Mapping[str, Any]], ids: list[str], states: set[str]) -> bool:
    """Whether every job of `ids` is in one of `states`."""
    return all(jobs.get(job_id, {}).get("state") in states for job_id in ids)


def md5_matches_ledger(project: Mapping[str, Any], job: Mapping[str, Any]) -> int:
    """Check every edit and export output on disk against the sandbox's md5; count them."""
    from tests.helpers import md5_of

    checked = 0
    for key, folder in (
        ("edit_outputs", job["edited_dir"]),
        ("export_outputs", job["exported_dir"]),
    ):
        for name, md5 in project[key].items():
            assert md5_of(Path(folder) / name) == md5, f"{folder}/{name}"
            checked += 1
    return checked
