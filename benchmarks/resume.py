"""Figures for crash-proof resume: a big job killed mid-upload, restarted, and what it costs.

    .venv/bin/python benchmarks/resume.py [--photos 10000] [--kill-at 5000] [--concurrency 8]
                                          [--database-url URL] [--parts 1,2,3]

The orchestrator runs as a real process (`orchestrator run`), the sandbox in this process with
a hook that notes when each upload request reaches storage. Tiny JPEGs, edits that take no
time, SQLite in a temporary folder unless --database-url names an empty database.

1. Whole job: `--photos` photos from start to end, uninterrupted: wall time, and the time of
   each stage from the job's history.
2. Transfers alone: the same uploads and downloads through `Transfers`, without a job or a
   database, at the same concurrency, in a process of their own like the job's: what the
   job's stages would cost with no bookkeeping.
   Whole job minus Python's start, the edit and these, per photo, is the bookkeeping
   overhead (scanning, hashing, checkpoints, history, links requests).
3. Resume: a fresh copy of the job killed by SIGKILL right after its `--kill-at`-th upload
   (ORCH_CRASH_AT=after_upload:N), then run again: time from the restart to the first new
   upload request at storage (goal: 0.8 s, which rules out re-hashing finished photos), the
   uploads repeated, and the time to finish.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import itertools
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from aiohttp import web
from common import API_KEY, orchestrator_env

from orchestrator.imagen.client import ImagenClient
from orchestrator.imagen.models import EditOptions
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.sandbox.server import RunningSandbox, start_sandbox
from orchestrator.store.migrate import upgrade
from orchestrator.transfer.manager import Transfers, TransferSettings, make_session

JPEG_PROFILE = "2001"


@dataclass
class Arrivals:
    """When upload requests reached storage (monotonic clock), in order."""

    uploads: list[float] = field(default_factory=list)

    def first_after(self, moment: float) -> float | None:
        """The first upload request that arrived after `moment`."""
        return next((t for t in self.uploads if t >= moment), None)


@asynccontextmanager
async def sandbox(arrivals: Arrivals) -> AsyncIterator[RunningSandbox]:
    """The sandbox in this process, with edits that take no time, noting upload arrivals."""

    @web.middleware
    async def note_upload(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        # Runs when the request's headers are in, before its body: its first byte on the wire.
        if request.method == "PUT" and "/upload/" in request.path:
            arrivals.uploads.append(time.monotonic())
        return await handler(request)

    running = await start_sandbox(
        SandboxConfig(edit_seconds=0.0, api_key=API_KEY), observers=[note_upload]
    )
    try:
        yield running
    finally:
        await running.close()


@dataclass(frozen=True)
class Run:
    """One `orchestrator run` process: when it started and ended, how it ended."""

    started: float
    ended: float
    returncode: int

    @property
    def seconds(self) -> float:
        """Its wall time."""
        return self.ended - self.started


async def orchestrator_run(
    shoot: Path, api_url: str, db_url: str, concurrency: int, **extra_env: str
) -> Run:
    """Run `orchestrator run SHOOT` to its end (or its death) as a child process."""
    env = orchestrator_env(api_url, db_url, **extra_env)
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        str(shoot),
        "--profile",
        JPEG_PROFILE,
        "--concurrency",
        str(concurrency),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    returncode = await proc.wait()
    return Run(started, time.monotonic(), returncode)


def stage_seconds(db_path: Path) -> dict[str, float]:
    """Seconds spent in each state of the job, from its history (SQLite only)."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute(
            "SELECT at, to_state FROM events WHERE kind = 'transition' ORDER BY id"
        ).fetchall()
    stamps = [(datetime.fromisoformat(at).timestamp(), state) for at, state in rows]
    return {state: later[0] - moment for (moment, state), later in itertools.pairwise(stamps)}


async def bare_transfers(shoot: Path, api_url: str, concurrency: int) -> tuple[float, float]:
    """Seconds to upload every photo, then download every edit, with no job and no database."""
    photos, sizes, digests = await asyncio.to_thread(_read_photos, shoot)
    settings = TransferSettings(concurrency=concurrency)
    session = make_session(settings)
    try:
        client = ImagenClient(session, base_url=api_url, api_key=API_KEY)
        transfers = Transfers(session, settings)
        project = await client.create_project()
        links: dict[str, str] = {}
        for start in range(0, len(photos), 200):
            batch = photos[start : start + 200]
            for link in await client.upload_links(
                project, [(p.name, base64.b64encode(digests[p.name]).decode()) for p in batch]
            ):
                links[link.file_name] = link.upload_link

        async def upload(path: Path) -> None:
            async def link(_refresh: bool) -> str:
                return links[path.name]

            await transfers.upload(path, link=link, size=sizes[path.name], md5=digests[path.name])

        began = time.monotonic()
        await pool([functools.partial(upload, p) for p in photos], concurrency)
        upload_seconds = time.monotonic() - began
        await client.start_edit(project, EditOptions(profile_key=int(JPEG_PROFILE)))
        while True:
            if (await client.edit_status(project)).is_completed:
                break
            await asyncio.sleep(0.05)
        outputs = await client.edit_download_links(project)
        folder = shoot.parent / "transfers-alone"

        async def download(name: str, url: str) -> None:
            async def link(_refresh: bool) -> str:
                return url

            await transfers.download(link=link, folder=folder, file_name=name)

        began = time.monotonic()
        await pool(
            [functools.partial(download, o.file_name, o.download_link) for o in outputs],
            concurrency,
        )
        return upload_seconds, time.monotonic() - began
    finally:
        await session.close()


def _read_photos(shoot: Path) -> tuple[list[Path], dict[str, int], dict[str, bytes]]:
    photos = sorted(p for p in shoot.iterdir() if p.is_file())
    return (
        photos,
        {p.name: p.stat().st_size for p in photos},
        {p.name: hashlib.md5(p.read_bytes()).digest() for p in photos},
    )


async def pool(work: list[Callable[[], Awaitable[None]]], workers: int) -> None:
    """Run the calls with `workers` at a time."""
    queue = list(reversed(work))

    async def worker() -> None:
        while queue:
            await queue.pop()()

    await asyncio.gather(*(worker() for _ in range(workers)))


def uploads_completed(running: RunningSandbox) -> int:
    """Every completed PUT the sandbox saw, over all projects."""
    return sum(
        f["uploads_completed"] for p in running.ledger()["projects"] for f in p["files"].values()
    )


async def python_startup() -> float:
    """Seconds for a Python process to import the orchestrator's command line and exit."""
    began = time.monotonic()
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "import orchestrator.cli")
    await proc.wait()
    return time.monotonic() - began


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=10_000)
    parser.add_argument("--kill-at", type=int, default=5_000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", help="an empty database (default: temporary SQLite)")
    parser.add_argument("--parts", default="1,2,3", help="which parts to run, e.g. 3")
    parser.add_argument(
        "--bare", nargs=2, metavar=("API_URL", "SHOOT"), help=argparse.SUPPRESS
    )  # part 2's child process
    args = parser.parse_args()
    if args.bare:
        up, down = await bare_transfers(Path(args.bare[1]), args.bare[0], args.concurrency)
        print(up, down)
        return
    parts = {int(p) for p in args.parts.split(",")}
    work = Path(tempfile.mkdtemp(prefix="bench-resume-"))
    arrivals = Arrivals()
    try:
        template = work / "template"
        make_sample_shoot(template, raw=0, jpeg=args.photos)
        size = sum(p.stat().st_size for p in template.iterdir())
        print(
            f"{args.photos} JPEGs of about {size / args.photos:.0f} B, concurrency "
            f"{args.concurrency}, database {args.database_url or 'SQLite (temporary file)'}"
        )
        startup = await python_startup()
        print(f"python startup (import orchestrator.cli): {startup:.2f} s")
        async with sandbox(arrivals) as running:
            whole = await whole_job(work, template, running, args) if 1 in parts else None
            alone = await transfers_alone(work, template, running, args) if 2 in parts else None
            if 3 in parts:
                await resume(work, template, running, arrivals, args)
        if whole is not None and alone is not None:
            run, edit_seconds = whole
            overhead = run.seconds - startup - edit_seconds - sum(alone)
            print(
                f"\nbookkeeping overhead: {overhead:.1f} s in all, "
                f"{overhead / args.photos * 1000:.2f} ms per photo (whole job {run.seconds:.1f} s"
                f" - python startup {startup:.1f} s - edit {edit_seconds:.1f} s - transfers "
                f"alone {sum(alone):.1f} s)"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


async def database(work: Path, name: str, given: str | None) -> tuple[str, Path | None]:
    """The database of one part: the one given (migrated), or a fresh SQLite file."""
    if given:
        await upgrade(given)
        return given, None
    path = work / f"{name}.sqlite"
    return f"sqlite:///{path}", path


async def whole_job(
    work: Path, template: Path, running: RunningSandbox, args: argparse.Namespace
) -> tuple[Run, float]:
    """Part 1; the run, and the seconds Imagen (the sandbox) spent editing."""
    shoot = work / "whole"
    shutil.copytree(template, shoot)
    url, path = await database(work, "whole", args.database_url)
    run = await orchestrator_run(shoot, running.api_url, url, args.concurrency)
    print(
        f"\n1. whole job: exit {run.returncode}, {run.seconds:.1f} s "
        f"({run.seconds / args.photos * 1000:.2f} ms per photo)"
    )
    stages = stage_seconds(path) if path is not None else {}
    for state, seconds in stages.items():
        if seconds >= 0.05:
            print(f"   {state:<18} {seconds:6.2f} s")
    return run, stages.get("edit_requested", 0.0) + stages.get("editing", 0.0)


async def transfers_alone(
    work: Path, template: Path, running: RunningSandbox, args: argparse.Namespace
) -> tuple[float, float]:
    """Part 2; seconds for the uploads and for the downloads.

    In a child process, as the job runs: the sandbox keeps this process's core to itself.
    """
    shoot = work / "alone" / "photos"
    shutil.copytree(template, shoot)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--bare",
        running.api_url,
        str(shoot),
        "--concurrency",
        str(args.concurrency),
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await child.communicate()
    up, down = (float(n) for n in output.split())
    print(
        f"\n2. transfers alone (no job, no database, own process): uploads {up:.2f} s "
        f"({up / args.photos * 1000:.2f} ms per photo), downloads {down:.2f} s "
        f"({down / args.photos * 1000:.2f} ms per photo)"
    )
    return up, down


@dataclass(frozen=True)
class Resumed:
    """Part 3's figures: the restart, its first new upload request (if any) and the repeats."""

    restarted: Run
    first_upload: float | None
    """Seconds from the restart's start to its first upload request at storage."""
    uploads_repeated: int


async def resume(
    work: Path,
    template: Path,
    running: RunningSandbox,
    arrivals: Arrivals,
    args: argparse.Namespace,
) -> Resumed:
    """Part 3."""
    shoot = work / "resume"
    shutil.copytree(template, shoot)
    url, _ = await database(work, "resume", args.database_url)
    before = uploads_completed(running)
    killed = await orchestrator_run(
        shoot, running.api_url, url, args.concurrency, ORCH_CRASH_AT=f"after_upload:{args.kill_at}"
    )
    at_kill = uploads_completed(running) - before
    restarted = await orchestrator_run(shoot, running.api_url, url, args.concurrency)
    first = arrivals.first_after(restarted.started)
    total = uploads_completed(running) - before
    figures = Resumed(
        restarted=restarted,
        first_upload=None if first is None else first - restarted.started,
        uploads_repeated=total - args.photos,
    )
    print(
        f"\n3. resume: first run killed (exit {killed.returncode}) after "
        f"{killed.seconds:.1f} s with {at_kill} uploads done"
    )
    if figures.first_upload is None:
        print("   the restart sent no upload at all")
    else:
        print(
            f"   restart -> first new upload request at storage: "
            f"{figures.first_upload:.2f} s (goal <= 0.8 s)"
        )
    print(
        f"   restart ran to the end: exit {restarted.returncode}, {restarted.seconds:.1f} s; "
        f"uploads repeated: {figures.uploads_repeated} (bound: {args.concurrency}, "
        "one kill x concurrency)"
    )
    return figures


if __name__ == "__main__":
    asyncio.run(main())
