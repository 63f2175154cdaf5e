"""What the crash, interrupt and resume tests share: their shoots, runs and ledger checks."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PIL import Image

from orchestrator.sandbox.samples import CR2_HEADER, make_sample_shoot
from orchestrator.store.queries import Store
from tests.helpers import ledger, leftovers, md5_of, orchestrator

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"
CONCURRENCY = 4
"""Transfers in flight in these tests: the bound on repeated uploads per kill."""
BIG_RAW, BIG_JPEG = "IMG_0006.DNG", "IMG_0007.jpg"


def make_crash_shoot(folder: Path, *, seed: int = 0, jpeg_only: bool = False) -> list[str]:
    """A small shoot with one large file per type, so kills can land mid-body; its file names.

    4 RAW (three 200 KB CR2 and a 2.5 MB DNG, whose edit is a 2.5 MB DNG) and 3 JPEG (two
    tiny ones and a 2 MB one, whose edit is as large); `jpeg_only` keeps the JPEGs only.
    """
    raw = 0 if jpeg_only else 3
    paths = make_sample_shoot(folder, raw=raw, jpeg=2, raw_size=200 * 1024, seed=seed)
    rng = random.Random(f"crash-shoot-{seed}")
    if not jpeg_only:
        paths.append(write_raw(folder / BIG_RAW, 2_500_000, rng))
    paths.append(write_big_jpeg(folder / BIG_JPEG, 2_000_000, rng))
    return sorted(p.name for p in paths)


def write_raw(path: Path, size: int, rng: random.Random) -> Path:
    """A RAW-looking file of `size` bytes."""
    path.write_bytes(CR2_HEADER + rng.randbytes(size - len(CR2_HEADER)))
    return path


def write_big_jpeg(path: Path, size: int, rng: random.Random) -> Path:
    """A real JPEG of noise of about `size` bytes. The sandbox edits and exports decodable
    photos as real pictures of at most 2,048 px, and noise that size stays about as large when
    it is encoded again: its outputs are streamed, and can be killed mid-body."""
    side = int(size**0.5)
    while True:
        noise = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        noise.save(path, "JPEG", quality=95)
        if path.stat().st_size >= size:
            return path
        side += side // 8


def run_shoot(
    shoot: Path, env: Mapping[str, str], *extra: str, json_output: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`orchestrator run SHOOT --export [--json]` with both profiles, as a real process."""
    return orchestrator(
        "run",
        str(shoot),
        "--profile",
        RAW_PROFILE,
        "--profile",
        JPEG_PROFILE,
        "--export",
        "--concurrency",
        str(CONCURRENCY),
        *(("--json",) if json_output else ()),
        *extra,
        env=env,
        timeout=timeout,
    )


def start_shoot(shoot: Path, env: Mapping[str, str], *extra: str) -> subprocess.Popen[str]:
    """The same run, started in the background (to be signalled or killed)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator",
            "run",
            str(shoot),
            "--profile",
            RAW_PROFILE,
            "--profile",
            JPEG_PROFILE,
            "--export",
            "--concurrency",
            str(CONCURRENCY),
            "--json",
            *extra,
        ],
        env=dict(env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finished_jobs(done: subprocess.CompletedProcess[str], why: str = "") -> list[dict[str, Any]]:
    """The jobs a successful `run --json` reports."""
    assert done.returncode == 0, f"exit {done.returncode} {why}\n{done.stderr[-3000:]}"
    jobs: list[dict[str, Any]] = json.loads(done.stdout)
    return jobs


def project_of(base_url: str, job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's one project in the sandbox ledger, found by its deterministic name."""
    named = [p for p in ledger(base_url)["projects"] if p["name"] == job["project_name"]]
    assert len(named) == 1, f"{len(named)} projects named after job {job['id']}"
    project: dict[str, Any] = named[0]
    return project


def assert_exactly_once(
    base_url: str, jobs: list[dict[str, Any]], shoot: Path, *, kills: int, files: int, why: str = ""
) -> None:
    """What any number of crashes must leave: every job done, each side effect once.

    One project, one edit and one export per job; every photo uploaded, repeats bounded by
    kills x concurrency; every output on disk byte-identical to what the sandbox made; no
    partial download left behind.
    """
    repeated = 0
    uploaded = 0
    for job in jobs:
        assert job["state"] == "completed", f"{job['name']} is {job['state']} {why}"
        project = project_of(base_url, job)
        assert project["project_uuid"] == job["project_uuid"], why
        assert (project["edit_requests"], project["export_requests"]) == (1, 1), why
        counts = [f["uploads_completed"] for f in project["files"].values()]
        assert all(n >= 1 for n in counts), f"a photo was never uploaded {why}"
        uploaded += len(counts)
        repeated += sum(counts) - len(counts)
        for key, folder in (
            ("edit_outputs", job["edited_dir"]),
            ("export_outputs", job["exported_dir"]),
        ):
            outputs: dict[str, str] = project[key]
            assert len(outputs) == len(counts), why
            # On disk an output keeps its photo's extension case (IMG_6.DNG, not Imagen's .dng).
            on_disk = {p.name.lower(): p for p in Path(folder).iterdir() if p.is_file()}
            assert sorted(on_disk) == sorted(n.lower() for n in outputs), why
            for name, md5 in outputs.items():
                assert md5_of(on_disk[name.lower()]) == md5, f"{name} differs {why}"
    assert uploaded == files, why
    assert repeated <= kills * CONCURRENCY, (
        f"{repeated} uploads repeated after {kills} kills at concurrency {CONCURRENCY} {why}"
    )
    assert leftovers(shoot) == [], why


def chaos_seed() -> int:
    """The seed of the random-instant kills: ORCH_CHAOS_SEED, else a fresh one."""
    given = os.environ.get("ORCH_CHAOS_SEED")
    return int(given) if given else random.SystemRandom().randrange(2**32)


def stored_jobs(db_url: str, shoot: Path) -> list[dict[str, Any]]:
    """The shoot's jobs straight from the database, each with its photos and history kinds.

    Faster than asking the CLI (no interpreter start) when a test only needs to look.
    """

    async def read() -> list[dict[str, Any]]:
        store = Store.open(db_url)
        try:
            found = []
            for job in await store.jobs_for_source(source):
                found.append(
                    {
                        "id": job.id,
                        "name": job.name,
                        "project_name": job.project_name,
                        "state": job.state,
                        "lease_owner": job.lease_owner,
                        "last_error": job.last_error,
                        "cancel_requested": job.cancel_requested,
                        "photos": {p.rel_path: p for p in await store.photos(job.id)},
                        "events": [(e.kind, e.message) for e in await store.events(job.id)],
                    }
                )
            return found
        finally:
            await store.close()

    source = str(shoot.resolve())
    return asyncio.run(read())
