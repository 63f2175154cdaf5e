"""Every row of issue 16's table in one run, each beside its baseline from the same run.

    .venv/bin/python benchmarks/speed.py [--rows 1,2,3,4,5,6,7] [--quick] [--keep]

1. `orchestrator run` of an upload-bound shoot (RAW files, so the edits are small sidecars;
   --concurrency 8, edits that take no time, a fresh SQLite database), its wall time from
   process start to exit, against parallel `curl -T` of the same files (8 at a time) and the
   official SDK's upload as a process of its own (benchmarks/sdk_run.py). Contenders take
   turns, round after round, each round against a fresh sandbox process (which keeps what it
   receives on disk). Throughput = bytes / wall time. Beside them, the bound of any client that
   must know each file's MD5 before its PUT, as ours must: the same curls with one `md5sum` of
   the same files running beside them from the start (no upload ever waits for a hash).
2. Peak RSS of that `orchestrator run` process (its VmHWM), and of the same run with files
   three times the size.
3. Downloads with verification (`Transfers.download`) against bare parallel `curl -o`:
   benchmarks/transfer.py's downloads. The bound of a downloader that verifies: each curl
   followed by the MD5 and fsync of its file, 8 such pipelines at a time.
4. The many-tiny-JPEGs job end to end (benchmarks/resume.py part 1) against the SDK's whole
   flow, `quick_edit` with the downloads, on the same photos and sandbox, as a process.
5. A killed run restarted: from its start to its first new upload request at storage
   (benchmarks/resume.py part 3).
6. `orchestrator --help` and `orchestrator status` (a database of a few finished jobs) against
   `python -c pass` from the same interpreter.
7. A link shaped to 1 Gbit/s: the sandbox in a network namespace behind a veth pair with a
   `tbf` qdisc on both ends (needs root and `ip netns`; skipped otherwise). Uploads and
   downloads of curl, the SDK and ours (benchmarks/transfer.py's contenders), without and with
   a per-request delay (the sandbox's `slow` fault on every request), against the rate curl
   really gets from the line.

Details of each part go to stderr as they are measured; the table goes to stdout. Every figure
is checked against the sandbox's ledger (each file arrived once, with its MD5; each edit came
down). MB are 10^6 bytes. --quick runs fewer and smaller files, and fewer rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transfer
from common import (
    Imagen,
    SandboxProcess,
    Timed,
    orchestrator_env,
    sandbox_process,
    timed_process,
)

from orchestrator.sandbox.samples import make_sample_shoot

MB = 1_000_000
CONCURRENCY = 8
RAW_PROFILE = "1001"
JPEG_PROFILE = 2001
LINE_RATE_MB = 125.0
"""1 Gbit/s in MB/s."""
ORCHESTRATOR = str(Path(sys.executable).with_name("orchestrator"))
"""The console script a user runs."""
SDK_SCRIPT = str(Path(__file__).with_name("sdk_run.py"))
NAMESPACE = "orch-speed"
HOST_ADDRESS, SANDBOX_ADDRESS = "10.200.0.1", "10.200.0.2"
ROWS = "1,2,3,4,5,6,7"
UPLOADERS = ("curl", transfer.CURL_HASHING, "sdk", "ours")
"""Row 1's contenders, taking turns."""


@dataclass(frozen=True)
class Scale:
    """How much each row measures: the full run or --quick."""

    upload_files: int
    upload_mb: int
    big_mb: int
    """Row 2's second size: the same number of files, this big."""
    rounds: int
    """Rounds of rows 1 and 3."""
    big_rounds: int
    tiny_photos: int
    kill_at: int
    resume_rounds: int
    cli_runs: int
    shaped_files: int
    shaped_mb: int
    shaped_rounds: int
    delay_seconds: float
    """Row 7's per-request delay."""


FULL = Scale(
    upload_files=24,
    upload_mb=40,
    big_mb=120,
    rounds=5,
    big_rounds=2,
    tiny_photos=10_000,
    kill_at=5_000,
    resume_rounds=3,
    cli_runs=7,
    shaped_files=12,
    shaped_mb=40,
    shaped_rounds=3,
    delay_seconds=0.05,
)
QUICK = Scale(
    upload_files=12,
    upload_mb=40,
    big_mb=120,
    rounds=3,
    big_rounds=1,
    tiny_photos=1_000,
    kill_at=500,
    resume_rounds=1,
    cli_runs=5,
    shaped_files=6,
    shaped_mb=40,
    shaped_rounds=1,
    delay_seconds=0.05,
)


@dataclass(frozen=True)
class Line:
    """One line of the table: a figure, its baseline from the same run, the ratio and the goal."""

    row: str
    measure: str
    figure: str
    baseline: str
    ratio: str
    goal: str
    met: bool | None
    """None: nothing to judge (skipped, or for reference)."""


@dataclass(frozen=True)
class Spread:
    """The median of a few measurements and their range."""

    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        return cls(statistics.median(values), min(values), max(values))

    def show(self, digits: int = 2, unit: str = "") -> str:
        """E.g. `1.23 s (1.10-1.40)`; the range only if there is more than one measurement."""
        median = f"{self.median:.{digits}f}{unit}"
        if self.low == self.high:
            return median
        return f"{median} ({self.low:.{digits}f}-{self.high:.{digits}f})"


def log(message: str) -> None:
    """Progress and details, on stderr (the table alone goes to stdout)."""
    print(message, file=sys.stderr, flush=True)


# --- shared by the rows -------------------------------------------------------------------------


def hashed_photos(folder: Path) -> list[transfer.Photo]:
    """The files of `folder` with their sizes and MD5s, as transfer.py's checks take them."""
    photos = []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        md5 = hashlib.md5(usedforsecurity=False)
        with path.open("rb") as source:
            while chunk := source.read(transfer.WRITE_CHUNK):
                md5.update(chunk)
        photos.append(transfer.Photo(path=path, size=path.stat().st_size, md5=md5.digest()))
    return photos


def linked_copy(photos: list[transfer.Photo], folder: Path) -> Path:
    """A fresh shoot folder holding hard links to the photos (no bytes copied)."""
    folder.mkdir()
    for photo in photos:
        os.link(photo.path, folder / photo.path.name)
    return folder


def projects(base_url: str) -> list[dict[str, Any]]:
    """The projects in the sandbox's ledger."""
    found: list[dict[str, Any]] = transfer.api_ledger(base_url)["projects"]
    return found


def project_uuids(base_url: str) -> set[str]:
    return {project["project_uuid"] for project in projects(base_url)}


def only_new_project(base_url: str, before: set[str]) -> str:
    """The one project created since `before` was taken."""
    [project] = project_uuids(base_url) - before
    return project


def project_named(base_url: str, name: str) -> str:
    [project] = [p["project_uuid"] for p in projects(base_url) if p["name"] == name]
    return project


def check_edits_downloaded(base_url: str, project: str, count: int) -> None:
    """Each of the project's `count` edit outputs was downloaded once, no more."""
    [record] = [p for p in projects(base_url) if p["project_uuid"] == project]
    downloads = record["downloads_completed"].get("edit", {})
    if len(record["edit_outputs"]) != count or sorted(downloads.values()) != [1] * count:
        outputs = len(record["edit_outputs"])
        raise RuntimeError(f"edits of {project}: {outputs}, downloads {downloads}")


def orchestrator_run(
    sandbox: SandboxProcess,
    shoot: Path,
    photos: list[transfer.Photo],
    database: Path,
    profile: str,
) -> Timed:
    """`orchestrator run SHOOT` (holding `photos`) as a user types it, to its exit; checked."""
    before = project_uuids(sandbox.base_url)
    os.sync()  # no contender pays for the previous one's writeback
    timed = timed_process(
        [ORCHESTRATOR, "run", str(shoot), "--profile", profile, "--concurrency", str(CONCURRENCY)],
        env=orchestrator_env(sandbox.api_url, f"sqlite:///{database}"),
    )
    check_whole_flow(sandbox.base_url, only_new_project(sandbox.base_url, before), photos)
    return timed


def check_whole_flow(base_url: str, project: str, photos: list[transfer.Photo]) -> None:
    """Every photo arrived once and intact, and each edit came down once.

    Blocking: a sandbox in this process is asked from a thread (`asyncio.to_thread`).
    """
    transfer.check_uploads(base_url, project, photos)
    check_edits_downloaded(base_url, project, len(photos))


def python_pass() -> float:
    """Wall time of `python -c pass` from this interpreter: the floor of any Python command."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def ratio(figure: float, baseline: float) -> str:
    return f"{figure / baseline:.2f}x"


# --- rows 1 and 2: an upload-bound `orchestrator run` -------------------------------------------


def curl_upload(
    api: Imagen, sandbox: SandboxProcess, photos: list[transfer.Photo], contender: str
) -> Timed:
    """Parallel `curl -T` of the photos (links signed for their MD5s), checked; as `curl+md5`,
    with an `md5sum` of the same files beside them (the best a client that hashes can do).

    Timed from the first curl's start to the last one's exit; peak RSS: the curls' at once.
    """
    project = api.create_project(f"speed-curl-{time.time_ns()}")
    links = api.upload_links(project, {p.path.name: p.md5 for p in photos})
    items = [
        {
            "path": str(p.path),
            "size": p.size,
            "url": links[p.path.name],
            "md5_hex": p.md5.hex(),
            "md5": base64.b64encode(p.md5).decode(),
        }
        for p in photos
    ]
    job = {"direction": "upload", "items": items, "concurrency": CONCURRENCY}
    measured = transfer.measure(contender, job, sandbox.pid, sum(p.size for p in photos))
    transfer.check_uploads(sandbox.base_url, project, photos)
    return Timed(seconds=measured.seconds, peak_rss_mb=measured.peak_rss_mb)


def sdk_upload(sandbox: SandboxProcess, shoot: Path, photos: list[transfer.Photo]) -> Timed:
    """The SDK's project and `upload_images` as a process, start to exit, checked."""
    name = f"speed-sdk-{time.time_ns()}"
    os.sync()
    timed = timed_process(
        [
            sys.executable,
            SDK_SCRIPT,
            "upload",
            sandbox.api_url,
            str(shoot),
            name,
            "--concurrency",
            str(CONCURRENCY),
        ]
    )
    transfer.check_uploads(sandbox.base_url, project_named(sandbox.base_url, name), photos)
    return timed


def upload_round(
    number: int, shoot: Path, photos: list[transfer.Photo], work: Path
) -> dict[str, Timed]:
    """One round of row 1, against a fresh sandbox process.

    Each round starts with the next contender, so that none always follows the same one.
    """
    turn = number % len(UPLOADERS)
    done = {}
    with sandbox_process("--edit-seconds", "0") as sandbox:
        for contender in UPLOADERS[turn:] + UPLOADERS[:turn]:
            if contender.startswith("curl"):
                done[contender] = curl_upload(Imagen(sandbox.api_url), sandbox, photos, contender)
            elif contender == "sdk":
                done[contender] = sdk_upload(sandbox, shoot, photos)
            else:
                run_shoot = linked_copy(photos, work / f"run-{number}")
                database = work / f"run-{number}.sqlite"
                done[contender] = orchestrator_run(
                    sandbox, run_shoot, photos, database, RAW_PROFILE
                )
    return done


def upload_bound(scale: Scale, work: Path, rows: set[int]) -> list[Line]:
    """Rows 1 and 2."""
    shoot = work / "raw"
    make_sample_shoot(shoot, raw=scale.upload_files, jpeg=0, raw_size=scale.upload_mb * MB)
    photos = hashed_photos(shoot)
    total = sum(p.size for p in photos)
    seconds: dict[str, list[float]] = {contender: [] for contender in UPLOADERS}
    peaks: dict[str, list[float]] = {contender: [] for contender in UPLOADERS}
    for number in range(scale.rounds):
        done = upload_round(number, shoot, photos, work)
        for contender, timed in done.items():
            seconds[contender].append(timed.seconds)
            peaks[contender].append(timed.peak_rss_mb)
        sdk, ours = done["sdk"], done["ours"]
        log(
            f"row 1, round {number + 1}: curl {seconds['curl'][-1]:.2f} s, curl+md5 "
            f"{seconds[transfer.CURL_HASHING][-1]:.2f} s, SDK {sdk.seconds:.2f}"
            f" s ({sdk.peak_rss_mb:.0f} MB), ours {ours.seconds:.2f} s ({ours.peak_rss_mb:.0f} MB)"
        )
    shutil.rmtree(shoot)
    lines: list[Line] = []
    speed = {c: Spread.of([total / MB / s for s in values]) for c, values in seconds.items()}
    if 1 in rows:
        lines += upload_lines(scale, speed, seconds)
    if 2 in rows:
        lines += memory_lines(scale, work, peaks)
    return lines


def upload_lines(
    scale: Scale, speed: dict[str, Spread], seconds: dict[str, list[float]]
) -> list[Line]:
    """Row 1: ours against curl and the SDK, ratios of the medians and range of each round's."""
    measure = f"run, {scale.upload_files} x {scale.upload_mb} MB RAW, 8 in flight, MB/s"
    lines = []
    for other, goal in (("curl", 0.8), ("sdk", 1.8)):
        rounds = [b / a for a, b in zip(seconds["ours"], seconds[other], strict=True)]
        achieved = speed["ours"].median / speed[other].median
        lines.append(
            Line(
                row="1",
                measure=f"{measure} vs {'parallel curl -T' if other == 'curl' else 'the SDK'}",
                figure=speed["ours"].show(0),
                baseline=f"{other} {speed[other].show(0)}",
                ratio=f"{achieved:.2f}x ({min(rounds):.2f}-{max(rounds):.2f})",
                goal=f">= {goal}x",
                met=achieved >= goal,
            )
        )
    bound = speed[transfer.CURL_HASHING].median
    lines.append(
        Line(
            row="1",
            measure=(
                "the bound of any client that must hash: curl -T with md5sum of the same files "
                f"beside it, MB/s (ours vs it: {speed['ours'].median / bound:.2f}x)"
            ),
            figure=speed[transfer.CURL_HASHING].show(0),
            baseline=f"curl {speed['curl'].show(0)}, SDK {speed['sdk'].show(0)}",
            ratio=(
                f"{bound / speed['curl'].median:.2f}x curl, {bound / speed['sdk'].median:.2f}x SDK"
            ),
            goal="(what the goals need)",
            met=None,
        )
    )
    return lines


def memory_lines(scale: Scale, work: Path, peaks: dict[str, list[float]]) -> list[Line]:
    """Row 2: ours' peak RSS in row 1's runs (the SDK's beside it), then with bigger files."""
    small = max(peaks["ours"])
    lines = [
        Line(
            row="2",
            measure=f"peak RSS of that run ({scale.upload_files} x {scale.upload_mb} MB), MB",
            figure=f"{small:.0f} (worst of {len(peaks['ours'])})",
            baseline=f"SDK {max(peaks['sdk']):.0f}",
            ratio=ratio(small, max(peaks["sdk"])),
            goal="<= 100 MB",
            met=small <= 100,
        )
    ]
    shoot = work / "raw-big"
    make_sample_shoot(shoot, raw=scale.upload_files, jpeg=0, raw_size=scale.big_mb * MB)
    photos = hashed_photos(shoot)
    big = []
    for number in range(scale.big_rounds):
        with sandbox_process("--edit-seconds", "0") as sandbox:
            run_shoot = linked_copy(photos, work / f"big-{number}")
            database = work / f"big-{number}.sqlite"
            timed = orchestrator_run(sandbox, run_shoot, photos, database, RAW_PROFILE)
        log(
            f"row 2, {scale.big_mb} MB files, round {number + 1}: {timed.seconds:.2f} s, "
            f"peak RSS {timed.peak_rss_mb:.0f} MB"
        )
        big.append(timed.peak_rss_mb)
    shutil.rmtree(shoot)
    lines.append(
        Line(
            row="2",
            measure=f"the same with {scale.upload_files} x {scale.big_mb} MB files, MB",
            figure=f"{max(big):.0f} (worst of {len(big)})",
            baseline=f"{scale.upload_mb} MB files {small:.0f}",
            ratio=ratio(max(big), small),
            goal="<= 100 MB, flat",
            met=max(big) <= 100,
        )
    )
    return lines


# --- row 3: downloads with verification ---------------------------------------------------------


def downloads(scale: Scale, work: Path) -> list[Line]:
    """Row 3: transfer.py's downloads of edited JPEGs, 8 at a time, in one sandbox process."""
    photos = transfer.make_photos(work / "jpegs", scale.upload_files, scale.upload_mb * MB)
    with sandbox_process("--edit-seconds", "0") as sandbox:
        api = Imagen(sandbox.api_url)
        project = api.create_project(f"speed-downloads-{time.time_ns()}")
        links = api.upload_links(project, {p.path.name: p.md5 for p in photos})
        items = [
            {"path": str(p.path), "size": p.size, "url": links[p.path.name], "md5_hex": p.md5.hex()}
            for p in photos
        ]
        job = {"direction": "upload", "items": items, "concurrency": CONCURRENCY}
        transfer.measure("ours", job, sandbox.pid, sum(p.size for p in photos))
        transfer.check_uploads(sandbox.base_url, project, photos)
        runs = transfer.benchmark_downloads(
            api, sandbox.base_url, sandbox.pid, project, work, CONCURRENCY, scale.rounds
        )
    shutil.rmtree(work / "jpegs")
    speed = {c: Spread.of([m.mb_per_second for m in measured]) for c, measured in runs.items()}
    for contender, spread in speed.items():
        log(f"row 3, downloads: {contender} {spread.show(0, ' MB/s')}")
    achieved = speed["ours"].median / speed["curl"].median
    rounds = [
        o.mb_per_second / c.mb_per_second for o, c in zip(runs["ours"], runs["curl"], strict=True)
    ]
    durable = speed["ours"].median / speed[transfer.CURL_DURABLE].median
    return [
        Line(
            row="3",
            measure=(
                f"downloads, {scale.upload_files} x {scale.upload_mb} MB, length+md5+durable "
                f"rename, MB/s (SDK {speed['sdk'].median:.0f})"
            ),
            figure=speed["ours"].show(0),
            baseline=f"curl -o {speed['curl'].show(0)}",
            ratio=f"{achieved:.2f}x ({min(rounds):.2f}-{max(rounds):.2f})",
            goal=">= 0.7x",
            met=achieved >= 0.7,
        ),
        Line(
            row="3",
            measure=(
                "the bound of a downloader that verifies: curl -o, then md5sum and sync of the "
                f"file, 8 at a time, MB/s (ours vs it: {durable:.2f}x)"
            ),
            figure=speed[transfer.CURL_DURABLE].show(0),
            baseline=f"curl -o {speed['curl'].show(0)}",
            ratio=ratio(speed[transfer.CURL_DURABLE].median, speed["curl"].median),
            goal="(what the goal needs)",
            met=None,
        ),
    ]


# --- rows 4 and 5: many tiny JPEGs, and a killed run restarted ----------------------------------


def tiny_photos(scale: Scale, work: Path, rows: set[int]) -> list[Line]:
    """Rows 4 and 5, against one sandbox in this process (benchmarks/resume.py's)."""
    return asyncio.run(_tiny_photos(scale, work, rows))


async def _tiny_photos(scale: Scale, work: Path, rows: set[int]) -> list[Line]:
    import resume  # its sandbox lives in this process: imported only by the rows using it

    template = work / "tiny"
    make_sample_shoot(template, raw=0, jpeg=scale.tiny_photos)
    options = argparse.Namespace(
        photos=scale.tiny_photos,
        kill_at=scale.kill_at,
        concurrency=CONCURRENCY,
        database_url=None,
    )
    arrivals = resume.Arrivals()
    lines = []
    async with resume.sandbox(arrivals) as running:
        if 4 in rows:
            lines += await whole_job(scale, work, template, running, options)
        if 5 in rows:
            lines += await restarts(scale, work, template, running, arrivals, options)
    return lines


async def whole_job(
    scale: Scale,
    work: Path,
    template: Path,
    running: Any,
    options: argparse.Namespace,
) -> list[Line]:
    """Row 4: resume.py part 1 (ours), then the SDK's `quick_edit` on the same photos."""
    import resume

    before = await asyncio.to_thread(project_uuids, running.base_url)
    with redirect_stdout(sys.stderr):
        run, _ = await resume.whole_job(work, template, running, options)
    if run.returncode != 0:
        raise RuntimeError(f"the {scale.tiny_photos}-photo run exited {run.returncode}")
    project = await asyncio.to_thread(only_new_project, running.base_url, before)
    photos = hashed_photos(template)
    await asyncio.to_thread(check_whole_flow, running.base_url, project, photos)

    name = f"speed-sdk-quick-edit-{time.time_ns()}"
    edits = work / "tiny-sdk-edits"
    started = time.perf_counter()
    sdk = await asyncio.create_subprocess_exec(
        sys.executable,
        SDK_SCRIPT,
        "quick-edit",
        running.api_url,
        str(template),
        name,
        str(JPEG_PROFILE),
        str(edits),
        stdout=asyncio.subprocess.DEVNULL,
    )
    if await sdk.wait() != 0:
        raise RuntimeError("the SDK's quick_edit failed")
    sdk_seconds = time.perf_counter() - started
    sdk_project = await asyncio.to_thread(project_named, running.base_url, name)
    await asyncio.to_thread(check_whole_flow, running.base_url, sdk_project, photos)
    log(f"row 4: ours {run.seconds:.1f} s, the SDK's quick_edit {sdk_seconds:.1f} s")
    measure = f"{scale.tiny_photos} x ~200 B JPEG job end to end (SQLite, edit 0), s"
    # The goal is for 10,000 photos: a smaller --quick job is not judged against it.
    full = scale.tiny_photos == FULL.tiny_photos
    return [
        Line(
            row="4",
            measure=measure,
            figure=f"{run.seconds:.1f}",
            baseline="-",
            ratio="-",
            goal="<= 25 s" if full else "(<= 25 s for 10,000)",
            met=run.seconds <= 25 if full else None,
        ),
        Line(
            row="4",
            measure=f"{measure}, vs the SDK's quick_edit (whole flow, as a process)",
            figure=f"{run.seconds:.1f}",
            baseline=f"SDK {sdk_seconds:.1f}",
            ratio=ratio(run.seconds, sdk_seconds),
            goal="<= 0.3x",
            met=run.seconds <= 0.3 * sdk_seconds,
        ),
    ]


async def restarts(
    scale: Scale,
    work: Path,
    template: Path,
    running: Any,
    arrivals: Any,
    options: argparse.Namespace,
) -> list[Line]:
    """Row 5: resume.py part 3, once per round; `python -c pass` beside it."""
    import resume

    firsts, floors = [], []
    for number in range(scale.resume_rounds):
        folder = work / f"resume-{number}"
        folder.mkdir()
        with redirect_stdout(sys.stderr):
            figures = await resume.resume(folder, template, running, arrivals, options)
        if figures.first_upload is None or figures.restarted.returncode != 0:
            raise RuntimeError(f"the restart did not go through: {figures}")
        firsts.append(figures.first_upload)
        floors.append(await asyncio.to_thread(python_pass))
        shutil.rmtree(folder)
    first, floor = Spread.of(firsts), Spread.of(floors)
    return [
        Line(
            row="5",
            measure=(
                f"killed run restarted ({scale.kill_at} of {scale.tiny_photos} uploaded): "
                "start to first new upload at storage, s"
            ),
            figure=first.show(2),
            baseline=f"python -c pass {floor.show(2)}",
            ratio=ratio(first.median, floor.median),
            goal="<= 0.8 s",
            met=first.median <= 0.8,
        )
    ]


# --- row 6: the command line's start -----------------------------------------------------------


def command_line(scale: Scale, work: Path) -> list[Line]:
    """Row 6: `--help` and `status` (3 finished jobs in the database), `python -c pass` beside."""
    database = work / "status.sqlite"
    with sandbox_process("--edit-seconds", "0") as sandbox:
        env = orchestrator_env(sandbox.api_url, f"sqlite:///{database}")
        for number in range(3):
            shoot = work / f"status-{number}"
            make_sample_shoot(shoot, raw=0, jpeg=200, seed=number)
            orchestrator_run(sandbox, shoot, hashed_photos(shoot), database, str(JPEG_PROFILE))
    listed = subprocess.run(
        [ORCHESTRATOR, "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    if [job["state"] for job in json.loads(listed.stdout)] != ["completed"] * 3:
        raise RuntimeError(f"status lists {listed.stdout[:500]}")
    commands = {
        "--help": [ORCHESTRATOR, "--help"],
        "status": [ORCHESTRATOR, "status"],
        "pass": [sys.executable, "-c", "pass"],
    }
    seconds: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(scale.cli_runs):
        for name, command in commands.items():
            seconds[name].append(timed_process(command, env=env).seconds)
    spreads = {name: Spread.of(values) for name, values in seconds.items()}
    log("row 6: " + ", ".join(f"{name} {s.show(3, ' s')}" for name, s in spreads.items()))
    return [
        Line(
            row="6",
            measure=f"orchestrator {name}{' (3 finished jobs)' if name == 'status' else ''}, "
            f"median of {scale.cli_runs}, s",
            figure=spreads[name].show(2),
            baseline=f"python -c pass {spreads['pass'].show(3)}",
            ratio=ratio(spreads[name].median, spreads["pass"].median),
            goal="<= 0.5 s",
            met=spreads[name].median <= 0.5,
        )
        for name in ("--help", "status")
    ]


# --- row 7: a link shaped to 1 Gbit/s -----------------------------------------------------------


class NoNamespace(Exception):
    """The shaped link could not be set up (not root, no `ip netns`, no veth or tbf)."""


@contextmanager
def shaped_namespace() -> Iterator[list[str]]:
    """A network namespace reached through a veth pair shaped to 1 Gbit/s in each direction.

    Yields the command prefix that runs a process inside it. `tbf` on the host's end shapes what
    goes in (uploads), on the namespace's end what comes out (downloads). Raises NoNamespace if
    it cannot be set up; removes what it set up.
    """
    inside = ["ip", "netns", "exec", NAMESPACE]
    host_end, far_end = "orchspeed0", "orchspeed1"
    shape = ["root", "tbf", "rate", "1gbit", "burst", "256kb", "latency", "50ms"]
    set_up(["ip", "netns", "add", NAMESPACE])
    try:
        for command in (
            ["ip", "link", "add", host_end, "type", "veth", "peer", "name", far_end],
            ["ip", "link", "set", far_end, "netns", NAMESPACE],
            ["ip", "addr", "add", f"{HOST_ADDRESS}/24", "dev", host_end],
            ["ip", "link", "set", host_end, "up"],
            [*inside, "ip", "addr", "add", f"{SANDBOX_ADDRESS}/24", "dev", far_end],
            [*inside, "ip", "link", "set", far_end, "up"],
            [*inside, "ip", "link", "set", "lo", "up"],
            ["tc", "qdisc", "add", "dev", host_end, *shape],
            [*inside, "tc", "qdisc", "add", "dev", far_end, *shape],
        ):
            set_up(command)
        yield inside
    finally:
        # Deleting the namespace deletes its end of the veth pair, and with it the host's end.
        subprocess.run(["ip", "netns", "del", NAMESPACE], check=False, capture_output=True)
        subprocess.run(["ip", "link", "del", host_end], check=False, capture_output=True)


def set_up(command: list[str]) -> None:
    """Run one command setting up the shaped link; NoNamespace, saying why, if it fails."""
    try:
        subprocess.run(command, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as error:
        detail = str(getattr(error, "stderr", None) or error).strip()
        if "File exists" in detail:
            detail += f" (left by a killed run? `ip netns del {NAMESPACE}`)"
        raise NoNamespace(f"{' '.join(command)}: {detail}") from error


def shaped_link(scale: Scale, work: Path) -> list[Line]:
    """Row 7: transfer.py's uploads and downloads through the shaped link, without and with a
    per-request delay; ours against the rate curl gets without the delay."""
    photos = transfer.make_photos(work / "shaped", scale.shaped_files, scale.shaped_mb * MB)
    figures = {}
    try:
        with (
            shaped_namespace() as inside,
            sandbox_process(
                "--host",
                SANDBOX_ADDRESS,
                "--edit-seconds",
                "0",
                "--slow-seconds",
                str(scale.delay_seconds),
                wrapper=inside,
            ) as sandbox,
        ):
            for delay in (0.0, scale.delay_seconds):
                set_slow(sandbox, on=delay > 0)
                figures[delay] = shaped_transfers(scale, work, sandbox, photos)
    except NoNamespace as error:
        log(f"row 7 skipped: {error}")
        return [Line("7", "a link shaped to 1 Gbit/s", "skipped", "-", "-", ">= 0.95x", None)]
    finally:
        shutil.rmtree(work / "shaped")
    return shaped_lines(scale, figures)


def set_slow(sandbox: SandboxProcess, *, on: bool) -> None:
    """Delay every request by the sandbox's --slow-seconds, or none."""
    Imagen(sandbox.base_url).call("PUT", "/_sandbox/faults", {"slow": 1.0 if on else 0.0})


Directions = dict[str, dict[str, Spread]]
"""MB/s by direction ("uploads", "downloads") and contender."""


def shaped_transfers(
    scale: Scale, work: Path, sandbox: SandboxProcess, photos: list[transfer.Photo]
) -> Directions:
    api = Imagen(sandbox.api_url)
    with redirect_stdout(sys.stderr):
        uploads, project = transfer.benchmark_uploads(
            api, sandbox.base_url, sandbox.pid, photos, CONCURRENCY, scale.shaped_rounds
        )
        downloads = transfer.benchmark_downloads(
            api,
            sandbox.base_url,
            sandbox.pid,
            project,
            work,
            CONCURRENCY,
            scale.shaped_rounds,
            downloaders=transfer.CONTENDERS,
        )
    figures = {
        direction: {c: Spread.of([m.mb_per_second for m in ms]) for c, ms in runs.items()}
        for direction, runs in (("uploads", uploads), ("downloads", downloads))
    }
    for direction, speeds in figures.items():
        log(
            f"row 7, {direction}: "
            + ", ".join(f"{c} {s.show(0, ' MB/s')}" for c, s in speeds.items())
        )
    return figures


def shaped_lines(scale: Scale, figures: dict[float, Directions]) -> list[Line]:
    """Row 7's lines: the real rate (curl, no delay) per direction, then ours and the SDK."""
    lines = []
    size = f"{scale.shaped_files} x {scale.shaped_mb} MB"
    for direction in ("uploads", "downloads"):
        real = figures[0.0][direction]["curl"]
        lines.append(
            Line(
                row="7",
                measure=f"1 Gbit/s line, {direction}: what curl gets ({size}), MB/s",
                figure=real.show(0),
                baseline=f"line {LINE_RATE_MB:.0f}",
                ratio=ratio(real.median, LINE_RATE_MB),
                goal="(the real rate)",
                met=None,
            )
        )
        for delay, speeds in figures.items():
            ours, sdk = speeds[direction]["ours"], speeds[direction]["sdk"]
            when = f"{delay * 1000:.0f} ms per request" if delay else "no delay"
            curl_here = f"; curl {speeds[direction]['curl'].median:.0f}" if delay else ""
            lines.append(
                Line(
                    row="7",
                    measure=(
                        f"1 Gbit/s line, {direction}, {when}: ours, MB/s (SDK {sdk.median:.0f}"
                        f" = {sdk.median / real.median:.2f}x{curl_here})"
                    ),
                    figure=ours.show(0),
                    baseline=f"real rate {real.median:.0f}",
                    ratio=f"{ratio(ours.median, real.median)} "
                    f"({ours.median / LINE_RATE_MB:.2f}x line)",
                    goal=">= 0.95x",
                    met=ours.median >= 0.95 * real.median,
                )
            )
    return lines


# --- the table ----------------------------------------------------------------------------------


def print_table(lines: list[Line]) -> None:
    headers = ("row", "measure", "figure (range)", "baseline, same run", "ratio", "goal", "")
    cells = [
        (
            line.row,
            line.measure,
            line.figure,
            line.baseline,
            line.ratio,
            line.goal,
            "" if line.met is None else ("MET" if line.met else "MISSED"),
        )
        for line in lines
    ]
    widths = [max(len(row[i]) for row in [headers, *cells]) for i in range(len(headers))]
    for row in [headers, *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default=ROWS, help=f"rows to measure (default {ROWS})")
    parser.add_argument("--quick", action="store_true", help="fewer, smaller files and rounds")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    rows = {int(row) for row in args.rows.split(",")}
    scale = QUICK if args.quick else FULL
    work = Path(tempfile.mkdtemp(prefix="speed-benchmark-"))
    started = time.perf_counter()
    load_before = os.getloadavg()[0]
    lines: list[Line] = []
    try:
        log(f"{'quick' if args.quick else 'full'} run, rows {sorted(rows)}, in {work}")
        if rows & {1, 2}:
            lines += upload_bound(scale, work, rows)
        if 3 in rows:
            lines += downloads(scale, work)
        if rows & {4, 5}:
            lines += tiny_photos(scale, work, rows)
        if 6 in rows:
            lines += command_line(scale, work)
        if 7 in rows:
            lines += shaped_link(scale, work)
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"issue 16's rows, {'--quick' if args.quick else 'full'} run of "
        f"{time.perf_counter() - started:.0f} s on {os.cpu_count()} cores, load average (1 min) "
        f"{load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print_table(lines)


if __name__ == "__main__":
    main()
