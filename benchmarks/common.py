"""What the benchmarks share: a sandbox process, a small blocking Imagen client, process figures,
and the environment an `orchestrator` command runs in."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text

API_KEY = "benchmark-key"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class SandboxProcess:
    """A sandbox running as its own process: where it listens and its pid (for its CPU time)."""

    base_url: str
    pid: int

    @property
    def api_url(self) -> str:
        """The Imagen API root, as IMAGEN_API_URL and the SDK's base_url take it."""
        return f"{self.base_url}/v1"


@contextmanager
def sandbox_process(*args: str, wrapper: Sequence[str] = ()) -> Iterator[SandboxProcess]:
    """Start `orchestrator sandbox --port 0 ARGS…`; yield it once it listens; stop it after.

    `wrapper` goes before the command, e.g. `ip netns exec NAME` (which execs it: the pid stays
    the sandbox's own).
    """
    proc = subprocess.Popen(
        [*wrapper, sys.executable, "-m", "orchestrator", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http"):
            raise RuntimeError(f"the sandbox did not start: {line!r}")
        yield SandboxProcess(base_url=line, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, from /proc."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
        # The command name may hold spaces; the fields after its closing parenthesis do not.
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_mb(field: str = "VmHWM") -> float:
    """A memory figure of this process from /proc/self/status in MB (VmHWM: peak RSS)."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def orchestrator_env(api_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """The environment of an `orchestrator` command against a sandbox: this one's, without any
    IMAGEN_ or ORCH_ setting of the caller's, with fast polls and no config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))}
    env.update(
        IMAGEN_API_URL=api_url,
        IMAGEN_API_KEY=API_KEY,
        ORCH_DATABASE_URL=db_url,
        ORCH_POLL_INITIAL="0.1",
        ORCH_POLL_MAX="0.2",
        ORCH_CONFIG=os.devnull,
        **extra,
    )
    return env


@dataclass(frozen=True)
class Timed:
    """A command run to its exit: wall time from just before its start to its exit, peak RSS."""

    seconds: float
    peak_rss_mb: float


def timed_process(
    command: Sequence[str], env: dict[str, str] | None = None, *, sample_seconds: float = 0.005
) -> Timed:
    """Run `command` to its exit (output discarded, stderr shown if it fails); time it.

    Its peak RSS is its own VmHWM, read from /proc by a thread while it runs (VmHWM only grows,
    so the last reading is within `sample_seconds` of its exit); the rusage of a child spawned
    from Python would include this process's own peak.
    """
    with tempfile.TemporaryFile() as stderr:
        started = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        peaks = [0.0]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(sample_seconds):
                peaks.append(_vm_hwm_mb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        proc.wait()
        seconds = time.perf_counter() - started
        done.set()
        sampler.join()
        if proc.returncode != 0:
            stderr.seek(0)
            failure = stderr.read().decode(errors="replace")[-3000:]
            raise RuntimeError(f"{' '.join(command)} exited {proc.returncode}:\n{failure}")
    return Timed(seconds=seconds, peak_rss_mb=max(peaks))


def _vm_hwm_mb(pid: int) -> float:
    """VmHWM of a running process in MB (10^6 bytes); 0 once it has exited."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024 / 1_000_000
    except OSError:
        pass
    return 0.0


class Imagen:
    """The few Imagen calls a benchmark needs to set up its transfers, blocking, no retries."""

    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def call(self, method: str, path: str, body: object | None = None) -> Any:
        """One API call; its payload with the `data` envelope removed."""
        request = urllib.request.Request(
            self.api_url + path,
            method=method,
            headers={"x-api-key": API_KEY},
            data=None if body is None else json.dumps(body).encode(),
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            payload = json.load(answer)
        return (
            payload["data"] if isinstance(payload, dict) and set(payload) == {"data"} else payload
        )

    def create_project(self, name: str) -> str:
        """A new project's uuid."""
        uuid: str = self.call("POST", "/projects/", {"name": name})["project_uuid"]
        return uuid

    def upload_links(self, project: str, md5s: dict[str, bytes | None]) -> dict[str, str]:
        """Upload links by file name; a name with a digest gets a link signed for it."""
        files = [
            {"file_name": name, **({"md5": base64.b64encode(md5).decode()} if md5 else {})}
            for name, md5 in md5s.items()
        ]
        answer = self.call(
            "POST", f"/projects/{project}/get_temporary_upload_links", {"files_list": files}
        )
        return {item["file_name"]: item["upload_link"] for item in answer["files_list"]}

    def edit_and_wait(self, project: str, profile_key: int, *, timeout: float = 600) -> None:
        """Start an edit and wait until Imagen reports it completed."""
        self.call("POST", f"/projects/{project}/edit", {"profile_key": profile_key})
        deadline = time.monotonic() + timeout
        while (
            status := self.call("GET", f"/projects/{project}/edit/status")["status"]
        ) != "Completed":
            if status == "Failed" or time.monotonic() > deadline:
                raise RuntimeError(f"the edit of {project} ended as {status}")
            time.sleep(0.2)

    def edit_links(self, project: str) -> dict[str, str]:
        """Download links of a completed edit, by output file name."""
        answer = self.call("GET", f"/projects/{project}/edit/get_temporary_download_links")
        return {item["file_name"]: item["download_link"] for item in answer["files_list"]}


def shoot_rows(jobs: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A shoot row for each synthetic job row (one shoot per folder, as the planner makes
    them), setting the job's `shoot_id`: rows for a direct `INSERT INTO shoots`."""
    shoots = []
    for job in jobs:
        shoot_id = job["id"]  # both are uuid4 hex: one shoot per job, same id
        job["shoot_id"] = shoot_id
        shoots.append(
            {
                "id": shoot_id,
                "name": job["name"],
                "source": job["source"],
                "keywords": "[]",
                "created_at": job["created_at"],
            }
        )
    return shoots


async def insert_rows(conn: Any, table: str, rows: Sequence[dict[str, Any]]) -> None:
    """Insert synthetic `rows` (dicts of one shape) into `table` over an SQLAlchemy async
    connection, 5,000 at a time."""
    columns = ", ".join(rows[0])
    values = ", ".join(f":{name}" for name in rows[0])
    statement = text(f"INSERT INTO {table} ({columns}) VALUES ({values})")
    for start in range(0, len(rows), 5000):
        await conn.execute(statement, list(rows[start : start + 5000]))
