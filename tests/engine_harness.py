"""The engine driven in-process against an in-process sandbox, with crashes simulated at will.

A simulated crash stops the engine at a named crash point exactly where `ORCH_CRASH_AT` would
kill a real process: a `SimulatedCrash` (a BaseException nothing catches) is raised there, the
lease is not given back, and the next `drive` comes from another owner that takes the lease over
from the "dead" one, as the next `orchestrator run` would. `mid_upload` is reached inside
aiohttp's body writer, where raising would only look like a network error, so there the driving
task is cancelled instead.

Unlike a SIGKILL, the unwinding still runs `finally` blocks (files are closed, checkpoints
already queued are committed); tests/e2e/test_crash_resume.py kills real processes for that.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.typedefs import Middleware

from orchestrator import crashpoints
from orchestrator.imagen.client import ImagenClient
from orchestrator.progress import NullProgress
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import RunningSandbox, start_sandbox
from orchestrator.spec import JobSpec
from orchestrator.store.queries import Lease, Store
from orchestrator.transfer.manager import Transfers, TransferSettings, make_session
from orchestrator.workflow.context import EngineConfig, Services
from orchestrator.workflow.engine import Engine, Outcome
from orchestrator.workflow.planning import RunRequest, plan_jobs

WORKERS = 4
API_KEY = "harness-key-0123456789"


class SimulatedCrash(BaseException):
    """The process "died" at this crash point."""


def dead_owner() -> str:
    """A lease owner naming a process of this host that has exited, as a killed run leaves."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return f"{socket.gethostname()}:{child.pid}:crashed"


@dataclass
class CrashPlan:
    """Where to crash: the n-th pass of one named point; whether it happened."""

    point: str
    count: int = 1
    hits: int = 0
    crashed: bool = False
    task: asyncio.Task[Any] | None = None

    def hit(self, name: str) -> None:
        """Stand-in for crashpoints.crash_point."""
        if name != self.point or self.crashed:
            return
        self.hits += 1
        if self.hits < self.count:
            return
        self.crashed = True
        if name == "mid_upload":
            assert self.task is not None
            self.task.cancel()
            return
        raise SimulatedCrash(name)


@contextlib.contextmanager
def crashing_at(plan: CrashPlan) -> Iterator[None]:
    """Make every orchestrator module's crash_point follow `plan` while the block runs."""
    patched = [
        module
        for name, module in list(sys.modules.items())
        if name.startswith("orchestrator.")
        and getattr(module, "crash_point", None) is crashpoints.crash_point
    ]
    for module in patched:
        module.crash_point = plan.hit  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module in patched:
            module.crash_point = crashpoints.crash_point  # type: ignore[attr-defined]


class _KeepsLease(Store):
    """A store whose release does nothing: a killed process never gives its lease back."""

    async def release(self, lease: Lease) -> None:
        return None


@dataclass
class Harness:
    """A sandbox, a store and the pieces of an engine, all in this process."""

    sandbox: RunningSandbox
    store: Store
    client: ImagenClient
    transfers: Transfers
    config: EngineConfig = field(
        default_factory=lambda: EngineConfig(poll_initial=0.05, poll_max=0.1, workers=WORKERS)
    )

    def engine(self, owner: str, *, store: Store | None = None) -> Engine:
        """An engine under this lease owner name."""
        return Engine(
            store=store or self.store,
            services=Services(imagen=self.client, transfers=self.transfers),
            progress=NullProgress(),
            config=self.config,
            owner=owner,
        )

    async def plan(self, shoot: Path, *, export: bool = True) -> list[str]:
        """The shoot folder's job ids (created or found), as `run` plans them."""
        plan = await plan_jobs(
            self.store,
            self.client,
            RunRequest(source=shoot, profiles=["1001", "2001"], spec=JobSpec(export=export)),
        )
        return [job.id for job in plan.jobs]

    async def drive(self, job_id: str) -> Outcome:
        """Drive the job to its end as a fresh process would."""
        return await self.engine(f"{socket.gethostname()}:resumed").drive(job_id)

    async def crash(self, job_id: str, plan: CrashPlan) -> bool:
        """Drive the job until `plan` makes it crash; False if it ended without crashing.

        The lease stays with an owner that looks like a dead process of this host.
        """
        engine = self.engine(dead_owner(), store=_KeepsLease(self.store.engine))
        loop = asyncio.get_running_loop()
        workers = ThreadPoolExecutor(thread_name_prefix="crashing")
        loop.set_default_executor(workers)
        plan.task = asyncio.create_task(engine.drive(job_id))
        try:
            with crashing_at(plan):
                try:
                    await plan.task
                except (SimulatedCrash, asyncio.CancelledError):
                    assert plan.crashed
                    return True
            return plan.crashed
        finally:
            # A real crash stops the worker threads too; a simulated one only unwinds the
            # loop's side, and a thread may still be writing or renaming a file. Let their
            # work end (as a crash a moment later would have left it) before anyone looks.
            loop.set_default_executor(ThreadPoolExecutor())
            await asyncio.to_thread(workers.shutdown)

    def ledger_project(self, job_id: str) -> dict[str, Any] | None:
        """The job's project in the ledger (by its deterministic name), if it exists."""
        named = [
            p
            for p in self.sandbox.ledger()["projects"]
            if p["name"].endswith(f" {job_id[:8]}")  # planning.project_name
        ]
        assert len(named) <= 1, f"{len(named)} projects for job {job_id}"
        return named[0] if named else None


@contextlib.asynccontextmanager
async def harness(
    db_url: str,
    *,
    edit_seconds: float = 0.05,
    workers: int = WORKERS,
    link_batch_size: int = EngineConfig.link_batch_size,
    observers: Sequence[Middleware] = (),
) -> AsyncIterator[Harness]:
    """An in-process sandbox and engine pieces over the database at `db_url`.

    `observers` are middlewares the sandbox runs for every request as it arrives.
    """
    sandbox = await start_sandbox(
        SandboxConfig(edit_seconds=edit_seconds, api_key=API_KEY), observers=observers
    )
    store = Store.open(db_url)
    settings = TransferSettings(concurrency=workers)
    session = make_session(settings)
    try:
        yield Harness(
            sandbox=sandbox,
            store=store,
            client=ImagenClient(session, base_url=sandbox.api_url, api_key=API_KEY),
            transfers=Transfers(session, settings),
            config=EngineConfig(
                poll_initial=0.05, poll_max=0.1, workers=workers, link_batch_size=link_batch_size
            ),
        )
    finally:
        await session.close()
        await store.close()
        await sandbox.close()
