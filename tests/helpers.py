"""Shared test helpers: the sandbox as a real process, the CLI as a real process."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent

PHOTO_HEADERS: dict[str, bytes] = {
    **dict.fromkeys(("jpg", "jpeg"), b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    **dict.fromkeys(
        ("cr2", "nef", "nrw", "arw", "srf", "sr2", "dng", "pef", "srw", "3fr", "fff", "ptx"),
        b"II*\x00\x08\x00\x00\x00",
    ),
    **dict.fromkeys(("rw2", "rwl", "raw"), b"IIU\x00\x08\x00\x00\x00"),
    "orf": b"IIRO\x08\x00\x00\x00",
    "cr3": b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01",
    "raf": b"FUJIFILMCCD-RAW 0201",
    "crw": b"II\x1a\x00\x00\x00HEAPCCDR\x02\x00",
}
"""The first bytes of each accepted photo type (lower-case extension): what the scan checks."""


def photo_bytes(name: str, body: bytes = b"x") -> bytes:
    """Bytes that pass for a photo called `name`: its format's signature, then `body`."""
    return PHOTO_HEADERS[name.rsplit(".", 1)[-1].lower()] + body


def cli_env(api_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """Environment for the CLI against a sandbox and a database, with fast polling."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))}
    env.update(
        {
            "IMAGEN_API_URL": api_url,
            "IMAGEN_API_KEY": "test-key-0123456789",
            "ORCH_DATABASE_URL": db_url,
            "ORCH_POLL_INITIAL": "0.2",
            "ORCH_POLL_MAX": "0.5",
            "ORCH_CONFIG": os.devnull,
            "COLUMNS": "200",
        }
    )
    env.update(extra)
    return env


def orchestrator(
    *args: str,
    env: Mapping[str, str],
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """Run the orchestrator command as a real process and capture its output."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def sandbox_process(*args: str) -> Iterator[str]:
    """Start `orchestrator sandbox` on a free port; yield its base URL; stop it after."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "sandbox", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        if not line.startswith("http"):
            proc.kill()
            raise RuntimeError(f"sandbox did not start: {line!r} {proc.stderr.read()}")  # type: ignore[union-attr]
        yield line
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def ledger(base_url: str) -> dict[str, Any]:
    """The sandbox's ledger."""
    with urllib.request.urlopen(f"{base_url}/_sandbox/ledger", timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def md5_of(path: Path) -> str:
    """Hex md5 of a file."""
    return hashlib.md5(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[Path]:
    """Temporary download files left anywhere under the folder."""
    return [p for p in folder.rglob("*") if ".partial" in p.name]


def status_jobs(env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    """Every job `orchestrator status --json` lists, taken out of the shoots that hold them."""
    shown = orchestrator("status", "--json", *args, env=env)
    assert shown.returncode == 0, shown.stderr
    return [job for shoot in json.loads(shown.stdout) for job in shoot["jobs"]]
