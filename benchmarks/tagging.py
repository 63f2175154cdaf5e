"""Keywording figures: Imagga throughput at the account's concurrency cap against the most the
cap allows, the time to make the copy of one 24-megapixel JPEG, and peak memory doing it.

Runs the sandbox's Imagga in process on a real port, with a fixed service time per request so
the ceiling is known: cap / service time. `python benchmarks/tagging.py [--images N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from PIL import Image

from orchestrator.integrations.downscale import downscale
from orchestrator.integrations.imagga import ImaggaClient
from orchestrator.retry import RetryPolicy
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import start_sandbox

SERVICE_SECONDS = 0.05
CAP = 5


def big_jpeg(path: Path) -> Path:
    """A 6000x4000 (24 MP) JPEG with detail everywhere, as a camera's would have."""
    small = Image.effect_noise((600, 400), 64).convert("RGB")
    small.resize((6000, 4000), Image.Resampling.BICUBIC).save(path, quality=92)
    return path


def time_downscale(path: Path, rounds: int = 5) -> tuple[float, int, float, float]:
    """(median seconds, copy bytes, peak resident MiB added, peak resident MiB) of downscaling."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times, size = [], 0
    for _ in range(rounds):
        start = time.perf_counter()
        size = len(downscale(path))
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return statistics.median(times), size, max(peak - before, 0) / 1024, peak / 1024


async def throughput(images: list[bytes], concurrency: int) -> tuple[float, int]:
    """(images per second, 429s) tagging every image with this many in flight."""
    sandbox = await start_sandbox(SandboxConfig(edit_seconds=0.1))
    try:
        async with aiohttp.ClientSession() as session:
            async with session.put(
                sandbox.base_url + "/_sandbox/imagga",
                json={"concurrency": CAP, "delay_seconds": SERVICE_SECONDS, "monthly_limit": 10**6},
            ):
                pass
            client = ImaggaClient(
                session,
                base_url=sandbox.base_url + "/imagga/v2",
                api_key="k",
                api_secret="s",
                concurrency=concurrency,
                retry=RetryPolicy(initial_interval=0.05, maximum_interval=0.5, maximum_attempts=50),
            )
            start = time.perf_counter()
            await asyncio.gather(*(client.tags(image, languages=["en"]) for image in images))
            elapsed = time.perf_counter() - start
        return len(images) / elapsed, int(sandbox.ledger()["imagga"]["throttled"])
    finally:
        await sandbox.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "big.jpg"
        # Made in a child process, so this one's peak memory is the downscale's alone.
        subprocess.run(
            [
                sys.executable,
                "-c",
                f"from benchmarks.tagging import big_jpeg; big_jpeg({str(path)!r})",
            ],
            check=True,
        )
        seconds, size, added, peak = time_downscale(path)
        print(
            f"downscale 24 MP JPEG ({path.stat().st_size / 1e6:.1f} MB): {seconds * 1000:.0f} ms "
            f"median, copy {size / 1024:.0f} KiB, peak resident {peak:.0f} MiB "
            f"(+{added:.0f} MiB over the process before it)"
        )
        with Image.open(io.BytesIO(downscale(path))) as copy:
            print(f"  copy size {copy.size[0]}x{copy.size[1]}")
    images = [
        Image.effect_noise((64, 48), 10 + i).convert("RGB").tobytes() + bytes([i % 256])
        for i in range(args.images)
    ]
    ceiling = CAP / SERVICE_SECONDS
    for concurrency in (1, CAP, 2 * CAP):
        rate, throttled = asyncio.run(throughput(images, concurrency))
        print(
            f"tagging at {concurrency:2d} in flight (cap {CAP}): {rate:6.1f} images/s "
            f"= {100 * rate / ceiling:3.0f}% of the cap's ceiling {ceiling:.0f}/s, "
            f"{throttled} answered 429"
        )


if __name__ == "__main__":
    main()
