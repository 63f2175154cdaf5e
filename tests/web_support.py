"""Helpers for the web page's tests: `orchestrator ui` as a real process, Debian's chromium
driven by Playwright (no browser download), and jobs written into the database as a driver
writes them (under a lease, through the store's own calls)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from orchestrator.spec import JobSpec
from orchestrator.states import JobState
from orchestrator.store.queries import Lease, NewJob, NewPhoto, Store
from tests.daemon_support import free_port, http, wait_for

T = TypeVar("T")


def chromium_path() -> str | None:
    """Debian's chromium (or ORCH_TEST_CHROMIUM), if this machine has one."""
    return (
        os.environ.get("ORCH_TEST_CHROMIUM")
        or shutil.which("chromium")
        or shutil.which("chromium-browser")
    )


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless chromium for the module's tests; skips, saying why, without one."""
    path = chromium_path()
    if path is None:
        pytest.skip("no chromium on this machine: `apt-get install chromium` (.ci/run does)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    with sync_playwright() as playwright:
        # As root (CI containers) chromium refuses its sandbox; the pages are our own.
        args = ["--no-sandbox"] if os.geteuid() == 0 else []
        launched = playwright.chromium.launch(executable_path=path, args=args)
        try:
            yield launched
        finally:
            launched.close()


def forged_post(url: str, form: bytes) -> int:
    """The status a form post without the page's CSRF field gets (as a forging site sends it)."""
    status, _ = http(
        "POST", url, body=form, headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    return status


def in_thread(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine to its end on a loop of its own (Playwright's sync API owns this one)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(make())).result()  # type: ignore[arg-type]


def with_store(db_url: str, use: Callable[[Store], Awaitable[T]]) -> T:
    """Open the database, `use` it and close it, on a loop (and thread) of its own."""

    async def run() -> T:
        store = Store.open(db_url)
        try:
            return await use(store)
        finally:
            await store.close()

    return in_thread(run)


class Ui:
    """`orchestrator ui` as a real process on a free port."""

    def __init__(self, env: dict[str, str], log_dir: Path, *, host: str = "127.0.0.1") -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = env
        self.host = host
        self.log = log_dir / f"ui-{self.port}.log"
        self.proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> Ui:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "orchestrator",
                    "ui",
                    "--listen",
                    f"{self.host}:{self.port}",
                ],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                text=True,
            )
        wait_for(self._up, timeout=30, what="orchestrator ui to answer")
        return self

    def _up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"ui exited with {self.proc.returncode}: {self.log.read_text()}")
        return http("GET", f"{self.url}/healthz")[0] == 200

    def __exit__(self, *_: object) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@dataclass
class SeededJob:
    """A job written straight into the database, with the lease of its "driver"."""

    id: str
    lease: Lease
    photo_ids: dict[str, int]


async def seed_job(
    store: Store, folder: Path, names: list[str], *, state: str, spec: JobSpec | None = None
) -> SeededJob:
    """A job of `names` moved (by the transition table's moves) to `state`, lease kept."""
    from orchestrator.workflow.journey import PIPELINE

    job_id = uuid.uuid4().hex
    await store.create_job(
        NewJob(
            id=job_id,
            name=folder.name,
            source=str(folder),
            edited_dir=str(folder / "edited"),
            exported_dir=str(folder / "exported"),
            image_type="JPG",
            profile_key=2001,
            profile_name="Natural",
            spec=(spec or JobSpec(export=True)).to_stored(),
            project_name=f"orchestrator-{job_id}",
        ),
        [NewPhoto(name, name, 1_000_000 * (i + 1), 0) for i, name in enumerate(names)],
    )
    lease = await store.claim(job_id, "test-driver", 600)
    path = [JobState.QUEUED, JobState.PROJECT_CREATED, JobState.UPLOADING, JobState.UPLOADED]
    for current, new in itertools.pairwise(path):
        if current == state:
            break
        await store.advance(lease, PIPELINE.transitions.move(current, new))
    photos = {p.file_name: p.id for p in await store.photos(job_id)}
    return SeededJob(job_id, lease, photos)
