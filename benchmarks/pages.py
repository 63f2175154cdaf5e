"""What the web page and the per-job API cost at a studio's size, before and after, side by side.

The database holds 10,000 jobs (each of 10 photos: a few dozen live in every live state, the
rest finished) and one live job of 20,000 photos (15,000 exports downloaded, 40 failed). The
history is synthetic: rows inserted directly, as a season would leave them, in seconds instead
of the days real jobs would take. Each side serves it with the real app, `orchestrator ui` as
a process on a real port, run from its own checkout (`--before`, e.g. a worktree of the
previous commit: `git worktree add /work/wt/pages-before 4e55259`); every figure is the median
of a few requests, bytes as sent.

Then "page views never slow the jobs": for each side, `orchestrator daemon` (which serves the
same page) over a copy of that database and a sandbox process, one 20-photo job submitted
alone and again while `--clients` clients load the big job's page in a loop; the time from
submission to completed.

    python benchmarks/pages.py --before /work/wt/pages-before [--clients 20] [--skip-daemon]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
from common import insert_rows, shoot_rows
from sqlalchemy import text

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store

HERE = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-0123456789"
LIVE_STATES = [
    "queued",
    "uploading",
    "editing",
    "downloading_edits",
    "exporting",
    "downloading_exports",
    "tagging",
    "reviewing",
    "delivering",
]
SPEC = {"version": 1, "export": True}


def _job(index: int, state: str, created: Any, *, name: str | None = None) -> dict[str, Any]:
    job_id = uuid.uuid4().hex
    return {
        "id": job_id,
        "name": name or f"wedding-{index:05d}",
        "source": f"/shoots/wedding-{index:05d}",
        "image_type": "JPG",
        "edited_dir": f"/shoots/wedding-{index:05d}/edited",
        "exported_dir": f"/shoots/wedding-{index:05d}/exported",
        "profile_key": 2001,
        "profile_name": "Natural",
        "options": json.dumps(SPEC),
        "state": state,
        "project_name": f"orchestrator-{job_id}",
        "attempt_count": 0,
        "lease_epoch": 1,
        "cancel_requested": False,
        "queued_for_daemon": False,
        "last_error": "Imagen refused 2 photos" if state == "failed" else None,
        "created_at": created,
        "updated_at": created,
    }


async def build(url: str, jobs: int, big: int) -> str:
    """Fill the database at `url`; the id of the big job."""
    await upgrade(url)
    store = Store.open(url)
    now = utcnow()
    job_rows, photo_rows, phase_rows = [], [], []
    photo_id = 0

    def photos_of(job: dict[str, Any], count: int, done: dict[str, int], failed: int) -> None:
        nonlocal photo_id
        for n in range(count):
            photo_id += 1
            name = f"IMG_{n:05d}.jpg"
            photo_rows.append(
                {
                    "id": photo_id,
                    "job_id": job["id"],
                    "rel_path": name,
                    "file_name": name,
                    "size": 8_000_000,
                    "mtime_ns": 0,
                    "md5": "0" * 32,
                }
            )
            for phase, upto in done.items():
                if n < upto:
                    phase_rows.append(
                        {
                            "photo_id": photo_id,
                            "phase": phase,
                            "job_id": job["id"],
                            "output": name if phase != "upload" else None,
                            "size": 6_000_000,
                            "done_at": now - timedelta(minutes=5),
                            "failed_reason": None,
                        }
                    )
                elif n < upto + failed:
                    phase_rows.append(
                        {
                            "photo_id": photo_id,
                            "phase": phase,
                            "job_id": job["id"],
                            "output": None,
                            "size": None,
                            "done_at": None,
                            "failed_reason": "the download's md5 does not match (3 tries)",
                        }
                    )

    for index in range(jobs):
        live = index >= jobs - 4 * len(LIVE_STATES)
        state = LIVE_STATES[index % len(LIVE_STATES)] if live else "completed"
        if not live and index % 50 == 0:
            state = "failed"
        job = _job(index, state, now - timedelta(minutes=jobs - index))
        job_rows.append(job)
        photos_of(job, 10, {"upload": 10, "edit": 10, "export": 5 if live else 10}, 0)
    big_job = _job(jobs, "downloading_exports", now - timedelta(seconds=30), name="big-wedding")
    job_rows.append(big_job)
    photos_of(big_job, big, {"upload": big, "edit": big, "export": big * 3 // 4}, 40)
    async with store.engine.begin() as conn:
        for table, rows in (
            ("shoots", shoot_rows(job_rows)),
            ("jobs", job_rows),
            ("photos", photo_rows),
            ("photo_phases", phase_rows),
        ):
            await insert_rows(conn, table, rows)
        await conn.execute(text("ANALYZE"))
    await store.close()
    print(
        f"database: {len(job_rows):,} jobs, {len(photo_rows):,} photos, "
        f"{len(phase_rows):,} photo phases (synthetic rows)"
    )
    return str(big_job["id"])


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def env_for(checkout: Path, db_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCH_", "IMAGEN_"))}
    env.update(
        PYTHONPATH=str(checkout),
        ORCH_DATABASE_URL=db_url,
        ORCH_CONFIG=os.devnull,
        ORCH_LOG_LEVEL="WARNING",
        IMAGEN_API_KEY=API_KEY,
        **extra,
    )
    return env


@contextmanager
def serving(args: list[str], env: dict[str, str], log: Path, url: str) -> Iterator[str]:
    """`orchestrator ARGS…` as a process; yields `url` once it answers /readyz."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=env["PYTHONPATH"],
        )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), 0.2):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError(f"{args[0]} exited; see {log}") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


async def fetch(session: aiohttp.ClientSession, url: str) -> tuple[int, int, float]:
    """(status, body bytes, seconds) of one GET."""
    started = time.perf_counter()
    async with session.get(url) as answer:
        body = await answer.read()
    return answer.status, len(body), time.perf_counter() - started


async def measure(base: str, big: str, rounds: int) -> dict[str, tuple[int, int, float]]:
    """Each page's status, bytes and median time."""
    found = {}
    # Unsafe: keep cookies from 127.0.0.1 too (a browser does), the CSRF cookie among them.
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        for _ in range(2):  # the first look sets the CSRF cookie the rows' forms carry
            async with session.get(f"{base}/") as answer:
                page = await answer.text()
        marker = 'data-stamp="'
        stamp = page.split(marker, 1)[1].split('"', 1)[0] if marker in page else ""
        poll = f"/jobs/rows?since={stamp}" if stamp else "/jobs/rows"
        paths = {
            "jobs page /": "/",
            "its poll /jobs/rows (nothing changed)": poll,
            "big job's page /jobs/<id>": f"/jobs/{big}",
            "/api/jobs": "/api/jobs",
            "/api/jobs/<big id>": f"/api/jobs/{big}",
        }
        for what, path in paths.items():
            times, status, size = [], 0, 0
            for _ in range(rounds):
                status, size, seconds = await fetch(session, base + path)
                times.append(seconds)
            found[what] = (status, size, statistics.median(times))
    return found


async def job_time(base: str, env: dict[str, str], work: Path, big: str, clients: int) -> float:
    """Seconds from submitting a 20-photo shoot to its completion, with `clients` loading
    the big job's page meanwhile."""
    shoot = work / f"shoot-{uuid.uuid4().hex[:6]}"
    make_sample_shoot(shoot, raw=0, jpeg=20, seed=clients)
    stop = asyncio.Event()
    loads = 0

    async def crowd(session: aiohttp.ClientSession) -> None:
        nonlocal loads
        while not stop.is_set():
            await fetch(session, f"{base}/jobs/{big}")
            loads += 1

    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        crowds = [asyncio.create_task(crowd(session)) for _ in range(clients)]
        started = time.monotonic()
        await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "orchestrator", "submit", str(shoot), "--profile", "2001"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=env["PYTHONPATH"],
        )
        try:
            while True:
                async with session.get(f"{base}/api/jobs", params={"limit": "5"}) as answer:
                    jobs = (await answer.json())["jobs"]
                mine = [j for j in jobs if j["source"] == str(shoot)]
                if mine and mine[0]["state"] in ("completed", "failed"):
                    if mine[0]["state"] == "failed":
                        raise RuntimeError(f"the job failed: {mine[0]['last_error']}")
                    return time.monotonic() - started
                if time.monotonic() - started > 600:
                    raise RuntimeError("the 20-photo job did not complete within 10 minutes")
                await asyncio.sleep(0.2)
        finally:
            stop.set()
            await asyncio.gather(*crowds, return_exceptions=True)
            if clients:
                print(f"    ({clients} clients loaded the big job's page {loads} times)")


@asynccontextmanager
async def sandbox() -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "orchestrator", "sandbox", "--port", "0", "--edit-seconds", "1"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        yield (await proc.stdout.readline()).decode().strip()
    finally:
        proc.terminate()
        await proc.wait()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="the checkout to compare with")
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--photos", type=int, default=20_000, help="photos of the big job")
    parser.add_argument("--rounds", type=int, default=3, help="requests per figure")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--skip-daemon", action="store_true")
    args = parser.parse_args()
    sides = [("before", args.before)] if args.before else []
    sides.append(("after", HERE))
    with tempfile.TemporaryDirectory(prefix="pages-bench-") as tmp:
        work = Path(tmp)
        db = work / "season.db"
        big = await build(f"sqlite:///{db}", args.jobs, args.photos)
        figures = {}
        for side, checkout in sides:
            port = free_port()
            env = env_for(checkout, f"sqlite:///{db}")
            with serving(
                ["ui", "--listen", f"127.0.0.1:{port}"],
                env,
                work / f"ui-{side}.log",
                f"http://127.0.0.1:{port}",
            ) as base:
                figures[side] = await measure(base, big, args.rounds)
        print(f"\n{'':42}" + "".join(f"{side:>28}" for side, _ in sides))
        for what in figures["after"]:
            cells = []
            for side, _ in sides:
                status, size, seconds = figures[side][what]
                cells.append(f"{size / 1000:>9,.1f} KB {seconds * 1000:>7.0f} ms ({status})")
            print(f"{what:42}" + "".join(f"{cell:>28}" for cell in cells))
        if args.skip_daemon:
            return
        print(
            f"\na 20-photo job in a daemon, alone and with {args.clients} clients on the big page"
        )
        async with sandbox() as sandbox_url:
            for side, checkout in sides:
                copy = work / f"daemon-{side}.db"
                shutil.copy(db, copy)
                port = free_port()
                env = env_for(
                    checkout,
                    f"sqlite:///{copy}",
                    IMAGEN_API_URL=f"{sandbox_url}/v1",
                    ORCH_POLL_INITIAL="0.5",
                    ORCH_POLL_MAX="1",
                )
                base = f"http://127.0.0.1:{port}"
                with serving(
                    ["daemon", "--listen", f"127.0.0.1:{port}", "--public-url", base],
                    env,
                    work / f"daemon-{side}.log",
                    base,
                ):
                    alone = await job_time(base, env, work, big, 0)
                    crowded = await job_time(base, env, work, big, args.clients)
                with_crowd = f"with {args.clients} clients {crowded:6.1f} s"
                print(f"  {side:6}: alone {alone:6.1f} s, {with_crowd}")


if __name__ == "__main__":
    asyncio.run(main())
