"""Figures for `orchestrator daemon`: idle cost of waiting jobs, callback latency, callbacks/s.

    .venv/bin/python benchmarks/daemon.py [--waiting 1000] [--latency-jobs 100]
                                          [--callbacks 20000] [--idle-seconds 30]

Needs a Postgres server (ORCH_BENCH_POSTGRES_URL, else ORCH_TEST_POSTGRES_URL, else
postgresql://postgres@127.0.0.1:5432/postgres); each part gets a database of its own, dropped
afterwards. The daemon runs as a real process; the sandbox runs in this process, with a hook
that notes when each project's first edit download arrives.

    .venv/bin/python benchmarks/daemon.py --only load [--load-jobs 10000] [--before DIR]
    .venv/bin/python benchmarks/daemon.py --only burst [--burst-jobs 1000] [--burst-daemons 3]

1. Idle: `--waiting` one-photo jobs are submitted and driven until they all wait for edits
   that take an hour; then the daemon's CPU time and memory are sampled over `--idle-seconds`.
2. Latency: `--latency-jobs` jobs whose edits take 2 s, submitted at a steady pace and then
   all at once; for each, the time from the callback reaching the daemon (its inbox
   timestamp) to the first download request reaching storage. Polls are a minute apart, so
   only the callback can explain a fast start. At once, the 8 slots are busy with new jobs
   and a woken job waits for the next free one.
3. Receiver: `--callbacks` POSTs at 64 at a time to 200 jobs' callback URLs, each callback
   repeated many times over (so mostly duplicates, as a flaky sender would make them).
4. Load: `--load-jobs` jobs waiting on edits (inserted directly, an hour into their wait) under
   `--load-daemons` daemons with default settings, with callbacks on and then with no public
   URL: each daemon's CPU (/proc), Postgres transactions/s (pg_stat_database) and Imagen status
   requests/s (counted at the sandbox) over `--load-seconds`. With `--before DIR` the same rows
   run first with the code checked out at DIR (its own migrations), for the figures of today.
5. Burst: `--burst-jobs` one-photo jobs driven by `--burst-daemons` daemons (default settings,
   callbacks on) until every one waits for its edit; then the sandbox finishes every edit at
   the same moment (its runs wait on one gate instead of their deadlines), so all the
   callbacks go out at once. Figures: each callback's answer time as the sender sees it (from
   its request sent to the answer's headers, aiohttp tracing; the sandbox's own queue of 100
   connections is not counted), the callbacks that failed or were refused, and the time from
   the gate to each job's first edit download. With `--before DIR` it runs first on that code.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import json
import logging
import os
import random
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web
from sqlalchemy import update
from sqlalchemy.engine import make_url

from orchestrator.imagen.client import ImagenClient
from orchestrator.sandbox import jobs as sandbox_jobs
from orchestrator.sandbox.callbacks import DELIVERY_TIMEOUT
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.context import IMAGEN
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.sandbox.server import RunningSandbox, start_sandbox
from orchestrator.service.submit import submit_request
from orchestrator.spec import JobSpec
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import Job
from orchestrator.store.queries import NewJob, NewPhoto, Store
from orchestrator.transfer.manager import TransferSettings, make_session
from orchestrator.workflow.planning import RunRequest

API_KEY = "bench-key-0123456789"
JPEG_PROFILE = "2001"


def server_url() -> str:
    return (
        os.environ.get("ORCH_BENCH_POSTGRES_URL")
        or os.environ.get("ORCH_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres"
    )


async def _admin(sql: str) -> None:
    dsn = make_url(server_url()).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@asynccontextmanager
async def fresh_database(code: Path | None = None) -> AsyncIterator[str]:
    """A new database with the schema of this code, or of the code at `code` (its migrations)."""
    name = f"orch_bench_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    url = (
        make_url(server_url())
        .set(drivername="postgresql", database=name)
        .render_as_string(hide_password=False)
    )
    try:
        if code is None:
            await upgrade(url)
        else:
            migrating = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "orchestrator",
                "db",
                "upgrade",
                env={**os.environ, "PYTHONPATH": str(code), "ORCH_DATABASE_URL": url},
                cwd=code,  # `python -m` puts the working directory first on the path
                stdout=asyncio.subprocess.DEVNULL,
            )
            if await migrating.wait() != 0:
                raise RuntimeError(f"the migrations of {code} failed")
        yield url
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def sandbox(
    edit_seconds: float, first_download: dict[str, float]
) -> AsyncIterator[RunningSandbox]:
    """The sandbox in this process, noting when each project's first edit download arrives."""

    @web.middleware
    async def note_download(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        project = request.match_info.get("project")
        if request.method == "GET" and project and "/edit/" in request.path:
            first_download.setdefault(project, time.time())
        return await handler(request)

    running = await start_sandbox(
        SandboxConfig(edit_seconds=edit_seconds), observers=[note_download]
    )
    try:
        yield running
    finally:
        await running.close()


class DaemonProcess:
    """`orchestrator daemon` as a child process, with /proc readings."""

    def __init__(
        self,
        db_url: str,
        api_url: str,
        log: Path,
        *,
        public: bool = True,
        code: Path | None = None,
        **env: str,
    ) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.public = public
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ORCH_")},
            **({"PYTHONPATH": str(code)} if code else {}),
            "IMAGEN_API_URL": api_url,
            "IMAGEN_API_KEY": API_KEY,
            "ORCH_DATABASE_URL": db_url,
            "ORCH_CONFIG": os.devnull,
            "ORCH_LOG_LEVEL": "WARNING",
            **env,
        }
        self.log = log
        self.code = code
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> DaemonProcess:
        with self.log.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "orchestrator",
                "daemon",
                "--listen",
                self.url.removeprefix("http://"),
                *(["--public-url", self.url] if self.public else []),
                env=self.env,
                cwd=self.code,  # `python -m` puts the working directory first on the path
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        async with aiohttp.ClientSession() as session:
            for _ in range(300):
                try:
                    async with session.get(f"{self.url}/readyz") as answer:
                        if answer.status == 200:
                            return self
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"daemon did not get ready; see {self.log}")

    async def __aexit__(self, *_exc: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        await asyncio.wait_for(self.proc.wait(), 30)

    def cpu_seconds(self) -> float:
        assert self.proc is not None
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mib(self) -> float:
        assert self.proc is not None
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")


def free_port() -> int:
    """A port nobody listens on now (closed again before the daemon binds it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def metric(session: aiohttp.ClientSession, base: str, name: str) -> float:
    async with session.get(f"{base}/metrics") as answer:
        for line in (await answer.text()).splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
    return float("nan")


async def jobs_in(session: aiohttp.ClientSession, base: str) -> dict[str, dict[str, Any]]:
    """Every job by id, from /api/jobs, page by page."""
    found: dict[str, dict[str, Any]] = {}
    query: dict[str, str] = {"limit": "1000"}
    while True:
        async with session.get(f"{base}/api/jobs", params=query) as answer:
            page = await answer.json()
        found.update((job["id"], job) for job in page["jobs"])
        if page["next"] is None:
            return found
        query["cursor"] = page["next"]


async def submit_shoots(
    db_url: str, api_url: str, shoots: list[Path], *, pace: float = 0.0
) -> list[str]:
    store = Store.open(db_url)
    session = make_session(TransferSettings())
    try:
        client = ImagenClient(session, base_url=api_url, api_key=API_KEY)
        ids: list[str] = []
        for shoot in shoots:
            submitted = await submit_request(
                store, client, RunRequest(source=shoot, profiles=[JPEG_PROFILE], spec=JobSpec())
            )
            ids += [job.id for job in submitted.jobs]
            await asyncio.sleep(pace)
        return ids
    finally:
        await session.close()
        await store.close()


def make_shoots(base: Path, count: int) -> list[Path]:
    shoots = []
    for n in range(count):
        shoot = base / f"shoot{n:05d}"
        make_sample_shoot(shoot, raw=0, jpeg=1, seed=n)
        shoots.append(shoot)
    return shoots


async def wait_all(
    session: aiohttp.ClientSession, base: str, ids: list[str], states: set[str], within: float
) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within:
        jobs = await jobs_in(session, base)
        if all(jobs.get(i, {}).get("state") in states for i in ids):
            return time.monotonic() - started
        await asyncio.sleep(1)
    raise RuntimeError(f"jobs did not reach {states} within {within} s")


async def idle_cost(work: Path, waiting: int, idle_seconds: float) -> None:
    print(f"\n## 1. {waiting} jobs waiting on edits")
    async with fresh_database() as db_url, sandbox(3600, {}) as sb:
        shoots = make_shoots(work / "idle", waiting)
        daemon = DaemonProcess(
            db_url,
            sb.api_url,
            work / "idle-daemon.log",
            ORCH_POLL_INITIAL="600",
            ORCH_POLL_MAX="600",
            ORCH_MAX_JOBS="32",
        )
        async with daemon, aiohttp.ClientSession() as session:
            started = time.monotonic()
            ids = await submit_shoots(db_url, sb.api_url, shoots)
            await wait_all(session, daemon.url, ids, {"editing"}, within=1800)
            print(
                f"submitted and driven to `editing` in {time.monotonic() - started:.0f} s "
                f"(daemon CPU so far {daemon.cpu_seconds():.1f} s)"
            )
            await asyncio.sleep(3)  # let the last drives unwind
            cpu0, t0 = daemon.cpu_seconds(), time.monotonic()
            await asyncio.sleep(idle_seconds)
            cpu1, t1 = daemon.cpu_seconds(), time.monotonic()
            tasks = await metric(session, daemon.url, "orchestrator_asyncio_tasks")
            driving = await metric(session, daemon.url, "orchestrator_jobs_in_progress")
            print(
                f"idle over {t1 - t0:.0f} s: daemon CPU {100 * (cpu1 - cpu0) / (t1 - t0):.2f} %"
                f" of one core, RSS {daemon.rss_mib():.0f} MiB, asyncio tasks {tasks:.0f}, "
                f"jobs being driven {driving:.0f} (polls every 600 s as a safety net)"
            )


async def callback_latency(work: Path, count: int, pace: float) -> None:
    how = f"one every {pace:g} s" if pace else "all at once (a backlog for the 8 slots)"
    print(f"\n## 2. callback -> first download request, {count} jobs submitted {how}")
    first_download: dict[str, float] = {}
    async with fresh_database() as db_url, sandbox(2.0, first_download) as sb:
        shoots = make_shoots(work / f"latency-{pace}", count)
        daemon = DaemonProcess(
            db_url,
            sb.api_url,
            work / "latency-daemon.log",
            ORCH_POLL_INITIAL="60",
            ORCH_POLL_MAX="60",
            ORCH_MAX_JOBS="8",
        )
        async with daemon, aiohttp.ClientSession() as session:
            ids = await submit_shoots(db_url, sb.api_url, shoots, pace=pace)
            await wait_all(session, daemon.url, ids, {"completed"}, within=600)
            latencies = []
            for job_id in ids:
                async with session.get(f"{daemon.url}/api/jobs/{job_id}") as answer:
                    detail = await answer.json()
                callback = next(e for e in detail["events"] if e["kind"] == "callback")
                received = datetime.fromisoformat(callback["at"]).timestamp()
                latencies.append(first_download[detail["job"]["project_uuid"]] - received)
    latencies.sort()

    def p(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))]

    print(
        f"ms: p50 {1000 * p(0.5):.0f}, p90 {1000 * p(0.9):.0f}, p99 {1000 * p(0.99):.0f}, "
        f"max {1000 * latencies[-1]:.0f}, mean {1000 * statistics.fmean(latencies):.0f}"
    )


async def receiver_rate(work: Path, total: int) -> None:
    print(f"\n## 3. receiver: {total} callbacks to 200 jobs, mostly duplicates")
    async with fresh_database() as db_url, sandbox(1, {}) as sb:
        store = Store.open(db_url)
        targets: list[tuple[str, str]] = []
        for n in range(200):
            job_id, secret, project = uuid.uuid4().hex, secrets.token_urlsafe(32), str(uuid.uuid4())
            await store.create_job(
                NewJob(
                    id=job_id,
                    name=f"j{n}",
                    source=f"/x/{n}",
                    edited_dir="/e",
                    exported_dir="/x",
                    image_type="JPG",
                    profile_key=2001,
                    profile_name="P",
                    spec={"version": 1},
                    project_name=f"orchestrator-{job_id}",
                ),
                [NewPhoto("a.jpg", "a.jpg", 1, 1)],
            )
            async with store.engine.begin() as conn:
                await conn.execute(
                    update(Job)
                    .where(Job.id == job_id)
                    .values(
                        state="editing",
                        project_uuid=project,
                        callback_secret_hash=hashlib.sha256(secret.encode()).hexdigest(),
                    )
                )
            targets.append((secret, project))
        await store.close()
        daemon = DaemonProcess(db_url, sb.api_url, work / "receiver-daemon.log")
        async with daemon, aiohttp.ClientSession() as session:
            rng = random.Random(3)
            bodies = [
                (s, json.dumps({"project_uuid": p, "action": a, "status": st}))
                for s, p in targets
                for a in ("edit", "export")
                for st in ("Completed", "Failed")
            ]
            codes: dict[int, int] = {}
            queue = [rng.choice(bodies) for _ in range(total)]

            async def worker() -> None:
                while queue:
                    secret, body = queue.pop()
                    async with session.post(
                        f"{daemon.url}/callbacks/{secret}", data=body
                    ) as answer:
                        await answer.read()
                        codes[answer.status] = codes.get(answer.status, 0) + 1

            started = time.monotonic()
            await asyncio.gather(*(worker() for _ in range(64)))
            elapsed = time.monotonic() - started
            print(
                f"{total / elapsed:.0f} callbacks/s ({elapsed:.1f} s); answers {codes} "
                f"(202 stored, 200 duplicate); daemon CPU {daemon.cpu_seconds():.1f} s, "
                f"the client shares the 2 cores"
            )


async def _synthetic_waiting_jobs(db_url: str, count: int) -> None:
    """`count` daemon jobs in `editing` for an hour already, as either schema keeps them.

    Inserted directly (driving 10,000 real jobs to `editing` takes most of an hour here): the
    cost of waiting is what follows. With `poll_at` (the poller's schema) each job's next poll
    falls within the next minute and its `wake_at` is the deadline; without it (before) the
    `wake_at` is the next poll. The state's start is an hour ago, so both poll at `poll_max`.
    """
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        has_poll_at = bool(
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.columns"
                " WHERE table_name = 'jobs' AND column_name = 'poll_at'"
            )
        )
        has_shoots = bool(
            await conn.fetchval(
                "SELECT count(*) FROM information_schema.tables WHERE table_name = 'shoots'"
            )
        )
        now = datetime.now(UTC)
        rng = random.Random(7)
        jobs, events = [], []
        for n in range(count):
            job_id = uuid.uuid4().hex
            next_poll = now + timedelta(seconds=rng.uniform(0, 60))
            wake_at = now + timedelta(hours=19) if has_poll_at else next_poll
            jobs.append(
                (job_id, f"w{n}", f"/shoots/w{n}", str(uuid.uuid4()), f"orchestrator-{job_id}")
                + ((wake_at, next_poll) if has_poll_at else (wake_at,))
            )
            events.append((job_id, now - timedelta(hours=1)))
        columns = "wake_at, poll_at" if has_poll_at else "wake_at"
        values = "$6, $7" if has_poll_at else "$6"
        if has_shoots:  # since migration 0008 every job belongs to a shoot: one each here
            await conn.executemany(
                "INSERT INTO shoots (id, name, source, keywords, created_at)"
                " VALUES ($1, $2, $3, '[]', now())",
                [job[:3] for job in jobs],
            )
            columns += ", shoot_id"
            values += ", $1"
        await conn.executemany(
            "INSERT INTO jobs (id, name, source, edited_dir, exported_dir, image_type,"
            " profile_key, profile_name, options, state, project_name, project_uuid,"
            " attempt_count, lease_epoch, cancel_requested, queued_for_daemon, created_at,"
            f" updated_at, {columns}) VALUES ($1, $2, $3, '/e', '/x', 'JPG', 2001, 'P',"
            " '{\"version\": 1}', 'editing', $5, $4, 0, 0, false, true, now(), now(),"
            f" {values})",
            jobs,
        )
        await conn.executemany(
            "INSERT INTO events (job_id, at, kind, to_state, message)"
            " VALUES ($1, $2, 'transition', 'editing', 'edit accepted by Imagen')",
            events,
        )
    finally:
        await conn.close()


async def _transactions(db_url: str) -> int:
    """Transactions committed and rolled back in the database so far (pg_stat_database)."""
    dsn = make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    conn = await asyncpg.connect(dsn)
    try:
        count: int = await conn.fetchval(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database"
            " WHERE datname = current_database()"
        )
        return count
    finally:
        await conn.close()


async def waiting_load(
    work: Path, count: int, seconds: float, *, daemons: int, public: bool, code: Path | None
) -> None:
    """`count` jobs waiting on edits under `daemons` daemons with default settings."""
    which = "before" if code else "now"
    how = "callbacks on" if public else "no public URL (polling only)"
    print(f"\n## {count} jobs waiting on edits, {daemons} daemons, defaults, {how} [{which}]")
    status_requests: list[float] = []

    @web.middleware
    async def note_status(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/status"):
            status_requests.append(time.monotonic())
        return await handler(request)

    async with fresh_database(code) as db_url:
        await _synthetic_waiting_jobs(db_url, count)
        running = await start_sandbox(SandboxConfig(edit_seconds=3600), observers=[note_status])
        try:
            processes = [
                DaemonProcess(
                    db_url,
                    running.api_url,
                    work / f"waiting-{which}-{n}.log",
                    public=public,
                    code=code,
                )
                for n in range(daemons)
            ]
            async with contextlib.AsyncExitStack() as stack:
                for process in processes:
                    await stack.enter_async_context(process)
                await asyncio.sleep(min(30.0, seconds / 2))  # past the start-up and first polls
                cpu0 = [p.cpu_seconds() for p in processes]
                xact0, t0 = await _transactions(db_url), time.monotonic()
                seen0 = len(status_requests)
                await asyncio.sleep(seconds)
                cpu1 = [p.cpu_seconds() for p in processes]
                xact1, t1 = await _transactions(db_url), time.monotonic()
                seen1 = len(status_requests)
        finally:
            await running.close()
    elapsed = t1 - t0
    cpu = ", ".join(f"{100 * (b - a) / elapsed:.2f} %" for a, b in zip(cpu0, cpu1, strict=True))
    print(
        f"over {elapsed:.0f} s: daemon CPU {cpu} of a core; Postgres "
        f"{(xact1 - xact0) / elapsed:.1f} transactions/s (all daemons, the counter's own "
        f"reads included); Imagen status requests {(seen1 - seen0) / elapsed:.1f}/s"
    )


def _percentiles(values: list[float]) -> str:
    """p50, p90, p99 and max of `values` (seconds), in milliseconds."""
    if not values:
        return "none"
    ordered = sorted(values)

    def p(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"p50 {1000 * p(0.5):.0f}, p90 {1000 * p(0.9):.0f}, p99 {1000 * p(0.99):.0f}, "
        f"max {1000 * ordered[-1]:.0f} ms"
    )


@contextlib.contextmanager
def edits_held(gate: asyncio.Event) -> Iterator[None]:
    """The sandbox's runs end when `gate` opens, not at their deadlines: a burst on demand."""
    original = sandbox_jobs.Job.wait_due

    async def wait_for_gate(_job: sandbox_jobs.Job) -> None:
        await gate.wait()

    sandbox_jobs.Job.wait_due = wait_for_gate  # type: ignore[method-assign]
    try:
        yield
    finally:
        sandbox_jobs.Job.wait_due = original  # type: ignore[method-assign]


async def callback_burst(
    work: Path, count: int, *, daemons: int, code: Path | None, env: dict[str, str]
) -> None:
    """`count` edits finishing at once under `daemons` daemons; see the module's part 5."""
    which = "before" if code else "now"
    settings = " ".join(f"{k}={v}" for k, v in env.items()) or "default settings"
    print(f"\n## {count} edits done at once, {daemons} daemons, {settings} [{which}]")
    first_download: dict[str, float] = {}
    answers: list[float] = []

    async def on_sent(_s: object, context: Any, _p: object) -> None:
        context.sent_at = time.monotonic()

    async def on_end(_s: object, context: Any, _p: object) -> None:
        if hasattr(context, "sent_at"):
            answers.append(time.monotonic() - context.sent_at)

    tracing = aiohttp.TraceConfig()
    tracing.on_request_headers_sent.append(on_sent)
    tracing.on_request_end.append(on_end)
    gate = asyncio.Event()
    # Each callback that fails is counted below, not logged one by one.
    logging.getLogger("orchestrator.sandbox.callbacks").setLevel(logging.ERROR)
    shoots = await asyncio.to_thread(make_shoots, work / f"burst-{which}", count)
    with edits_held(gate):
        async with fresh_database(code) as db_url, sandbox(3600, first_download) as sb:
            dispatcher = sb._app[IMAGEN].callbacks
            await dispatcher.close()
            dispatcher._session = aiohttp.ClientSession(
                timeout=DELIVERY_TIMEOUT, trace_configs=[tracing]
            )
            processes = [
                DaemonProcess(db_url, sb.api_url, work / f"burst-{which}-{n}.log", code=code, **env)
                for n in range(daemons)
            ]
            async with contextlib.AsyncExitStack() as stack, aiohttp.ClientSession() as session:
                for process in processes:
                    await stack.enter_async_context(process)
                started = time.monotonic()
                ids = await submit_shoots(db_url, sb.api_url, shoots)
                await wait_all(session, processes[0].url, ids, {"editing"}, within=3600)
                took = time.monotonic() - started
                print(f"{count} jobs submitted and waiting on edits in {took:.0f} s")
                await asyncio.sleep(3)  # the last drives unwind
                cpu0 = [p.cpu_seconds() for p in processes]
                xact0 = await _transactions(db_url)
                opened = time.time()  # the download hook notes wall-clock times
                gate.set()
                for _ in range(600):  # five minutes at most
                    if len(first_download) >= count:
                        break
                    await asyncio.sleep(0.5)
                cpu = sum(p.cpu_seconds() for p in processes) - sum(cpu0)
                xacts = await _transactions(db_url) - xact0
                await asyncio.sleep(DELIVERY_TIMEOUT.total or 10)  # the last callbacks end
                downloads = [t - opened for t in first_download.values()]
                log = list(dispatcher.log)
    statuses: dict[object, int] = {}
    for entry in log:
        key = entry.get("http_status", entry.get("error"))
        statuses[key] = statuses.get(key, 0) + 1
    print(f"callbacks: {len(log)} sent, outcomes {statuses}; answered in {_percentiles(answers)}")
    print(
        f"first edit download after the burst, {len(downloads)} of {count} jobs: "
        f"{_percentiles(downloads)}"
    )
    print(
        f"until the last first download: the daemons' CPU {cpu:.1f} s in all "
        f"({1000 * cpu / count:.0f} ms a job), Postgres {xacts} transactions "
        f"({xacts / count:.1f} a job)"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--waiting", type=int, default=1000)
    parser.add_argument("--latency-jobs", type=int, default=100)
    parser.add_argument("--callbacks", type=int, default=20000)
    parser.add_argument("--idle-seconds", type=float, default=30)
    parser.add_argument("--load-jobs", type=int, default=10000)
    parser.add_argument("--load-seconds", type=float, default=60)
    parser.add_argument("--load-daemons", type=int, default=3)
    parser.add_argument("--burst-jobs", type=int, default=1000)
    parser.add_argument("--burst-daemons", type=int, default=3)
    parser.add_argument(
        "--burst-env",
        action="append",
        default=[],
        help="NAME=VALUE for the burst's daemons (repeatable), e.g. ORCH_MAX_JOBS=32",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of the code to compare with (e.g. a worktree of 4e55259): its rows "
        "run beside this code's",
    )
    parser.add_argument(
        "--only",
        choices=["idle", "latency", "receiver", "load", "burst"],
        action="append",
        help="run only these parts (repeatable); all by default",
    )
    args = parser.parse_args()
    parts = set(args.only or ["idle", "latency", "receiver", "load"])
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} cores, Postgres at "
        f"{make_url(server_url()).render_as_string(hide_password=True)}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-daemon-") as scratch:
        work = Path(scratch)
        if "idle" in parts:
            await idle_cost(work, args.waiting, args.idle_seconds)
        if "latency" in parts:
            await callback_latency(work, args.latency_jobs, pace=0.15)
            await callback_latency(work, args.latency_jobs, pace=0.0)
        if "receiver" in parts:
            await receiver_rate(work, args.callbacks)
        if "burst" in parts:
            env = dict(item.split("=", 1) for item in args.burst_env)
            for code in (args.before, None) if args.before else (None,):
                await callback_burst(
                    work, args.burst_jobs, daemons=args.burst_daemons, code=code, env=env
                )
        if "load" in parts:
            for public in (True, False):
                for code in (args.before, None) if args.before else (None,):
                    await waiting_load(
                        work,
                        args.load_jobs,
                        args.load_seconds,
                        daemons=args.load_daemons,
                        public=public,
                        code=code,
                    )


if __name__ == "__main__":
    asyncio.run(main())
