"""Transfer throughput and peak memory: parallel curl, the official SDK, and ours, on loopback.

    python benchmarks/transfer.py [--files 16] [--size-mb 50] [--concurrency 16] [--rounds 3]
                                  [--keep]

One sandbox process serves every contender; the same files go up (and come down) at the same
concurrency. Uploads: `curl -T` processes in parallel (the physical-limit proxy), the SDK's
`upload_images`, and `Transfers.upload`. Downloads, of the edited JPEGs (each the size of its
input): `curl -o` processes in parallel, the same followed by the MD5 and fsync that ours does
on every file (for reference), the SDK's `download_files`, and `Transfers.download`.
Each contender runs in a fresh child process, so its peak RSS is its own (for curl: the sum of
the peaks of the curl processes in flight at once). Contenders take turns, round after round;
the table shows the median. MB are 10^6 bytes.

The sandbox's CPU use is shown too: it is one event loop plus file threads, and when it nears
100% it, not the client, sets the pace."""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import API_KEY, Imagen, cpu_seconds, memory_mb, sandbox_process

JPEG_PROFILE = 2001
"""A JPEG profile: its edit output is the input plus an XMP segment, so downloads are full-size."""
WRITE_CHUNK = 4 * 1024 * 1024
CONTENDERS = ("curl", "sdk", "ours")
CURL_DURABLE = "curl+md5+fsync"
"""A download-only contender: curl followed by the MD5 and fsync that ours does on every file."""
CURL_HASHING = "curl+md5"
"""An upload-only contender: the same curls, with one `md5sum` of every file running beside
them from the start. No client that must know each file's MD5 can do better: the hashing costs
it the same processor time, and none of its uploads ever waits for a hash."""
DOWNLOADERS = ("curl", CURL_DURABLE, "sdk", "ours")
MB = 1_000_000
SAMPLE_SECONDS = 0.005
"""How often the curl processes' memory is looked at."""


@dataclass(frozen=True)
class Measured:
    """One contender's run: wall time of the transfers, bytes moved, memory and CPU."""

    contender: str
    seconds: float
    size: int
    peak_rss_mb: float
    client_cpu: float
    sandbox_cpu: float

    @property
    def mb_per_second(self) -> float:
        """Throughput in MB/s."""
        return self.size / MB / self.seconds


# --- the contenders, each run in a child process ------------------------------------------------


def _child_curl(job: dict[str, Any]) -> dict[str, float]:
    """Run one curl per file, `concurrency` at a time (as CURL_HASHING, with an `md5sum` of every
    file beside them); peak RSS is the sum of the largest peaks of the curls.

    A process spawned from Python inherits Python's peak in its rusage, so each curl's own peak
    is read from its /proc status (VmHWM, which exec resets) while it runs.
    """
    commands: list[list[str]] = []
    for item in job["items"]:
        if job["direction"] == "upload":
            commands.append(
                [
                    "curl",
                    "-sS",
                    "--fail",
                    "-o",
                    "/dev/null",
                    "-T",
                    item["path"],
                    "-H",
                    "Content-Type:",
                    "-H",
                    f"Content-MD5: {item['md5']}",
                    "-H",
                    "Expect:",
                    item["url"],
                ]
            )
        elif job["contender"] == CURL_DURABLE:
            # What ours does besides: hash what arrived, and make it durable before it counts.
            commands.append(
                [
                    "sh",
                    "-c",
                    'curl -sS --fail -o "$1" "$2" && md5sum "$1" >/dev/null && sync "$1"',
                    "sh",
                    item["path"],
                    item["url"],
                ]
            )
        else:
            commands.append(["curl", "-sS", "--fail", "-o", item["path"], item["url"]])
    running: dict[int, subprocess.Popen[bytes]] = {}
    peaks: dict[int, float] = {}
    failures = 0
    started = time.perf_counter()
    hashing = 0
    if job["contender"] == CURL_HASHING:
        paths = [item["path"] for item in job["items"]]
        beside = subprocess.Popen(["md5sum", *paths], stdout=subprocess.DEVNULL)
        hashing = beside.pid
        running[hashing] = beside
    pending = list(reversed(commands))
    while pending or running:
        while pending and len(running) - (hashing in running) < job["concurrency"]:
            process = subprocess.Popen(pending.pop())
            running[process.pid] = process
        for pid in running:
            for curl, peak in _curl_peaks(pid).items():
                peaks[curl] = max(peaks.get(curl, 0.0), peak)
        while running and (reaped := os.waitpid(-1, os.WNOHANG))[0]:
            process = running.pop(reaped[0])
            process.returncode = os.waitstatus_to_exitcode(reaped[1])
            failures += process.returncode != 0
        time.sleep(SAMPLE_SECONDS)
    seconds = time.perf_counter() - started
    if failures:
        raise RuntimeError(f"{failures} curl processes failed")
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "seconds": seconds,
        "peak_rss_mb": sum(sorted(peaks.values())[-job["concurrency"] :]),
        "client_cpu": children.ru_utime + children.ru_stime,
    }


def _curl_peaks(pid: int) -> dict[int, float]:
    """VmHWM in MB of every curl process among `pid` and its descendants, by pid."""
    peaks = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            fields = dict(line.split(":", 1) for line in status.read().splitlines())
        with open(f"/proc/{pid}/task/{pid}/children", encoding="ascii") as listing:
            children = [int(child) for child in listing.read().split()]
    except OSError:
        return {}
    if fields.get("Name", "").strip() == "curl" and "VmHWM" in fields:
        peaks[pid] = int(fields["VmHWM"].split()[0]) * 1024 / MB
    for child in children:
        peaks.update(_curl_peaks(child))
    return peaks


async def _sdk(job: dict[str, Any]) -> float:
    """The official SDK's own upload or download call; its wall time."""
    # Imported here, as in `_ours`: each child loads only its own contender's code.
    import logging

    from imagen_sdk import ImagenClient

    logging.disable(logging.CRITICAL)
    async with ImagenClient(API_KEY, base_url=job["api_url"]) as client:
        started = time.perf_counter()
        if job["direction"] == "upload":
            summary = await client.upload_images(
                job["project"],
                [item["path"] for item in job["items"]],
                max_concurrent=job["concurrency"],
            )
            if summary.failed:
                raise RuntimeError(
                    f"the SDK failed {summary.failed} uploads: "
                    f"{[r.error for r in summary.results if not r.success][:3]}"
                )
        else:
            saved = await client.download_files(
                [item["url"] for item in job["items"]],
                output_dir=job["folder"],
                max_concurrent=job["concurrency"],
            )
            if len(saved) != len(job["items"]):
                raise RuntimeError(f"the SDK saved {len(saved)} of {len(job['items'])} files")
        return time.perf_counter() - started


async def _ours(job: dict[str, Any]) -> float:
    """`Transfers` as the engine uses it (defaults but for the concurrency); its wall time."""
    from orchestrator.transfer.manager import Transfers, TransferSettings, make_session

    settings = TransferSettings(concurrency=job["concurrency"])
    moved = 0

    def count(n: int) -> None:
        nonlocal moved
        moved += n

    def fixed(url: str) -> Callable[[bool], Any]:
        async def link(refresh: bool) -> str:
            return url

        return link

    async with make_session(settings) as session:
        transfers = Transfers(session, settings)
        started = time.perf_counter()
        if job["direction"] == "upload":
            await asyncio.gather(
                *(
                    transfers.upload(
                        Path(item["path"]),
                        link=fixed(item["url"]),
                        size=item["size"],
                        md5=bytes.fromhex(item["md5_hex"]),
                        on_bytes=count,
                    )
                    for item in job["items"]
                )
            )
        else:
            await asyncio.gather(
                *(
                    transfers.download(
                        link=fixed(item["url"]),
                        folder=Path(job["folder"]),
                        file_name=item["name"],
                        on_bytes=count,
                    )
                    for item in job["items"]
                )
            )
        seconds = time.perf_counter() - started
    if moved != sum(item["size"] for item in job["items"]):
        raise RuntimeError(f"progress counted {moved} bytes")
    return seconds


def run_child(job: dict[str, Any]) -> None:
    """In the child: run one contender and print its figures as one JSON line."""
    if job["contender"].startswith("curl"):
        figures = _child_curl(job)
    else:
        before = resource.getrusage(resource.RUSAGE_SELF)
        seconds = asyncio.run((_sdk if job["contender"] == "sdk" else _ours)(job))
        after = resource.getrusage(resource.RUSAGE_SELF)
        figures = {
            "seconds": seconds,
            "peak_rss_mb": memory_mb("VmHWM") * 1024 * 1024 / MB,
            "client_cpu": (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime),
        }
    print(json.dumps(figures))


# --- the parent: files, sandbox, measurements, table ---------------------------------------------


@dataclass(frozen=True)
class Photo:
    """One test file and its MD5."""

    path: Path
    size: int
    md5: bytes


def make_photos(folder: Path, count: int, size: int) -> list[Photo]:
    """`count` JPEG-looking files of `size` bytes: SOI, random bytes, EOI."""
    folder.mkdir(parents=True)
    photos = []
    for number in range(1, count + 1):
        path = folder / f"IMG_{number:04d}.jpg"
        md5 = hashlib.md5(usedforsecurity=False)
        with path.open("wb") as out:
            remaining = size - 4
            for piece in (b"\xff\xd8", None, b"\xff\xd9"):
                while piece is None and remaining:
                    chunk = os.urandom(min(WRITE_CHUNK, remaining))
                    remaining -= len(chunk)
                    md5.update(chunk)
                    out.write(chunk)
                if piece is not None:
                    md5.update(piece)
                    out.write(piece)
        photos.append(Photo(path=path, size=size, md5=md5.digest()))
    return photos


def measure(contender: str, job: dict[str, Any], sandbox_pid: int, size: int) -> Measured:
    """Run one contender in a fresh child process and collect its figures.

    Dirty pages are flushed first, so that no contender pays for the previous one's writeback.
    """
    os.sync()
    cpu_before = cpu_seconds(sandbox_pid)
    answer = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps({**job, "contender": contender})],
        capture_output=True,
        text=True,
        check=False,
    )
    sandbox_cpu = cpu_seconds(sandbox_pid) - cpu_before
    if answer.returncode != 0:
        raise RuntimeError(f"{contender} {job['direction']} failed:\n{answer.stderr[-3000:]}")
    figures = json.loads(answer.stdout.strip().splitlines()[-1])
    return Measured(
        contender=contender,
        seconds=figures["seconds"],
        size=size,
        peak_rss_mb=figures["peak_rss_mb"],
        client_cpu=figures["client_cpu"],
        sandbox_cpu=sandbox_cpu,
    )


def check_uploads(base_url: str, project: str, photos: list[Photo]) -> None:
    """Every file arrived once and intact, according to the sandbox's ledger."""
    ledger = api_ledger(base_url)
    [record] = [p for p in ledger["projects"] if p["project_uuid"] == project]
    for photo in photos:
        stored = record["files"][photo.path.name]
        if stored["md5"] != photo.md5.hex() or stored["uploads_completed"] != 1:
            raise RuntimeError(f"{photo.path.name} arrived wrong: {stored}")


def check_downloads(folder: Path, expected: dict[str, str]) -> None:
    """Exactly the expected files are in `folder`, each with the ledger's MD5."""
    names = sorted(p.name for p in folder.iterdir())
    if names != sorted(expected):
        raise RuntimeError(f"{folder} holds {names}")
    for name, md5_hex in expected.items():
        md5 = hashlib.md5(usedforsecurity=False)
        with (folder / name).open("rb") as source:
            while chunk := source.read(WRITE_CHUNK):
                md5.update(chunk)
        if md5.hexdigest() != md5_hex:
            raise RuntimeError(f"{name} came down wrong")


def api_ledger(base_url: str) -> dict[str, Any]:
    """The sandbox's ledger."""
    ledger: dict[str, Any] = Imagen(base_url).call("GET", "/_sandbox/ledger")
    return ledger


Runs = dict[str, list[Measured]]
"""Each contender's measurements, one per round."""


def benchmark_uploads(
    api: Imagen, base_url: str, sandbox_pid: int, photos: list[Photo], concurrency: int, rounds: int
) -> tuple[Runs, str]:
    """Upload the photos once per contender and round, each time into a fresh project.

    Contenders take turns within each round, so that a slow spell of the machine is shared.
    The last project "ours" filled is returned for the downloads.
    """
    runs: Runs = {contender: [] for contender in CONTENDERS}
    project = ""
    total = sum(photo.size for photo in photos)
    for _ in range(rounds):
        for contender in CONTENDERS:
            project = api.create_project(f"transfer-benchmark-{contender}-{time.time_ns()}")
            items: list[dict[str, Any]] = [{"path": str(p.path), "size": p.size} for p in photos]
            if contender != "sdk":
                # The SDK asks for its own links, without MD5s: it cannot send Content-MD5.
                links = api.upload_links(project, {p.path.name: p.md5 for p in photos})
                for item, photo in zip(items, photos, strict=True):
                    item.update(
                        url=links[photo.path.name], md5_hex=photo.md5.hex(), md5=_b64(photo.md5)
                    )
            job = {
                "direction": "upload",
                "items": items,
                "concurrency": concurrency,
                "project": project,
                "api_url": api.api_url,
            }
            runs[contender].append(measure(contender, job, sandbox_pid, total))
            check_uploads(base_url, project, photos)
    return runs, project


def benchmark_downloads(
    api: Imagen,
    base_url: str,
    sandbox_pid: int,
    project: str,
    work: Path,
    concurrency: int,
    rounds: int,
    downloaders: tuple[str, ...] = DOWNLOADERS,
) -> Runs:
    """Edit the uploaded JPEGs, then download the edits once per contender and round."""
    api.edit_and_wait(project, JPEG_PROFILE)
    links = api.edit_links(project)
    [record] = [p for p in api_ledger(base_url)["projects"] if p["project_uuid"] == project]
    expected: dict[str, str] = record["edit_outputs"]
    sizes = {name: _content_length(url) for name, url in links.items()}
    total = sum(sizes.values())
    runs: Runs = {contender: [] for contender in downloaders}
    for _ in range(rounds):
        for contender in downloaders:
            folder = work / f"downloads-{contender}"
            folder.mkdir()
            items = [
                {"name": name, "url": url, "size": sizes[name], "path": str(folder / name)}
                for name, url in links.items()
            ]
            job = {
                "direction": "download",
                "items": items,
                "concurrency": concurrency,
                "folder": str(folder),
                "api_url": api.api_url,
            }
            runs[contender].append(measure(contender, job, sandbox_pid, total))
            check_downloads(folder, expected)
            shutil.rmtree(folder)
    return runs


def _content_length(url: str) -> int:
    with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=30) as head:
        return int(head.headers["Content-Length"])


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


@dataclass(frozen=True)
class Summary:
    """A contender's rounds in one direction: median throughput and its range, worst memory."""

    contender: str
    mb_per_second: float
    slowest: float
    fastest: float
    peak_rss_mb: float
    client_cpu: float
    sandbox_cpu_percent: float

    @classmethod
    def of(cls, runs: list[Measured]) -> Summary:
        """Summarise one contender's rounds."""
        speeds = [run.mb_per_second for run in runs]
        return cls(
            contender=runs[0].contender,
            mb_per_second=statistics.median(speeds),
            slowest=min(speeds),
            fastest=max(speeds),
            peak_rss_mb=max(run.peak_rss_mb for run in runs),
            client_cpu=statistics.median(run.client_cpu for run in runs),
            sandbox_cpu_percent=statistics.median(
                100 * run.sandbox_cpu / run.seconds for run in runs
            ),
        )


def print_table(title: str, runs: Runs) -> dict[str, Summary]:
    """The figures of one direction, with each contender's ratios to curl and to the SDK."""
    rows = {contender: Summary.of(measured) for contender, measured in runs.items()}
    curl, sdk = rows["curl"], rows["sdk"]
    print(f"\n{title}")
    print(
        f"{'contender':<15}{'MB/s':>7}{'(range)':>12}{'peak RSS MB':>13}{'vs curl':>9}"
        f"{'vs SDK':>8}{'client CPU s':>14}{'sandbox CPU %':>15}"
    )
    for row in rows.values():
        print(
            f"{row.contender:<15}{row.mb_per_second:>7.0f}"
            f"{f'({row.slowest:.0f}-{row.fastest:.0f})':>12}{row.peak_rss_mb:>13.0f}"
            f"{row.mb_per_second / curl.mb_per_second:>8.2f}x"
            f"{row.mb_per_second / sdk.mb_per_second:>7.2f}x{row.client_cpu:>14.2f}"
            f"{row.sandbox_cpu_percent:>15.0f}"
        )
    return rows


def verdicts(direction: str, rows: dict[str, Summary], files: int, size_mb: int) -> None:
    """One line per goal: ours ≥ 0.9× curl, ours faster than the SDK, ours ≤ 150 MB peak RSS."""
    ours, curl, sdk = rows["ours"], rows["curl"], rows["sdk"]
    ratio = ours.mb_per_second / curl.mb_per_second
    goals = (
        (f"{direction}: ours >= 0.9x curl throughput", ratio >= 0.9, f"{ratio:.2f}x"),
        (
            f"{direction}: ours faster than the SDK",
            ours.mb_per_second > sdk.mb_per_second,
            f"{ours.mb_per_second / sdk.mb_per_second:.2f}x",
        ),
        (
            f"{direction}: ours peak RSS <= 150 MB with {files} x {size_mb} MB in flight",
            ours.peak_rss_mb <= 150,
            f"{ours.peak_rss_mb:.0f} MB (SDK {sdk.peak_rss_mb:.0f} MB)",
        ),
    )
    for goal, met, detail in goals:
        print(f"{'MET   ' if met else 'MISSED'} {goal}: {detail}")
    if CURL_DURABLE in rows:
        durable = ours.mb_per_second / rows[CURL_DURABLE].mb_per_second
        print(
            f"(for reference) {direction}: ours vs curl doing the same MD5 and fsync: "
            f"{durable:.2f}x"
        )


def main() -> None:
    """Parse the options, build the files, start the sandbox, measure, print, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=16, help="how many files (default 16)")
    parser.add_argument("--size-mb", type=int, default=50, help="size of each file in MB")
    parser.add_argument("--concurrency", type=int, default=16, help="transfers at once")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="measurements per contender and direction; the median is shown",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_child(json.loads(args.child))
        return

    work = Path(tempfile.mkdtemp(prefix="transfer-benchmark-"))
    try:
        print(
            f"{args.files} files x {args.size_mb} MB, concurrency {args.concurrency}, in {work}",
            file=sys.stderr,
        )
        photos = make_photos(work / "photos", args.files, args.size_mb * MB)
        with sandbox_process("--edit-seconds", "0.5") as sandbox:
            api = Imagen(sandbox.api_url)
            uploads, project = benchmark_uploads(
                api, sandbox.base_url, sandbox.pid, photos, args.concurrency, args.rounds
            )
            downloads = benchmark_downloads(
                api, sandbox.base_url, sandbox.pid, project, work, args.concurrency, args.rounds
            )
        print(
            f"{args.files} files x {args.size_mb} MB, concurrency {args.concurrency}, "
            f"median of {args.rounds} rounds"
        )
        up_rows = print_table("uploads", uploads)
        down_rows = print_table("downloads (edited JPEGs: input size + XMP)", downloads)
        print()
        verdicts("uploads", up_rows, args.files, args.size_mb)
        verdicts("downloads", down_rows, args.files, args.size_mb)
    finally:
        if args.keep:
            print(f"kept {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
