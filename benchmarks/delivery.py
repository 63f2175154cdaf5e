"""Delivery against imgix's documented limits: 200 small photos, 2 uploads per second.

`orchestrator run SHOOT --export --deliver` against a sandbox process (whose imgix has the
documented per-endpoint buckets); the delivery stage's wall time (entering `delivering` to
`completed`, from the job's history) is set against the 100 s that 200 uploads at 2/s take at
best (99.5 s: the first leaves at once), and the 429s the sandbox served are counted.

    python benchmarks/delivery.py [--photos 200]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from benchmarks.common import API_KEY, sandbox_process
from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.store.queries import Store

UPLOADS_PER_SECOND = 2.0


async def stage_seconds(db_url: str, job_id: str) -> float:
    """Seconds from entering `delivering` to `completed`, from the job's history."""
    store = Store.open(db_url)
    try:
        start = await store.entered_state_at(job_id, "delivering")
        end = await store.entered_state_at(job_id, "completed")
    finally:
        await store.close()
    assert start is not None and end is not None
    return (end - start).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--photos", type=int, default=200)
    photos = parser.parse_args().photos
    with tempfile.TemporaryDirectory() as temp, sandbox_process("--edit-seconds", "0.5") as box:
        shoot = Path(temp) / "shoot"
        make_sample_shoot(shoot, raw=0, jpeg=photos, seed=1)
        db_url = f"sqlite:///{temp}/jobs.db"
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("IMAGEN_", "ORCH_"))},
            "IMAGEN_API_URL": box.api_url,
            "IMAGEN_API_KEY": API_KEY,
            "ORCH_DATABASE_URL": db_url,
            "ORCH_POLL_INITIAL": "0.2",
            "ORCH_POLL_MAX": "0.5",
            "ORCH_CONFIG": os.devnull,
            "IMGIX_API_URL": f"{box.base_url}/imgix/api/v1",
            "IMGIX_API_KEY": "benchmark-imgix-key",
            "IMGIX_SOURCE_ID": "benchmark",
            "IMGIX_DOMAIN": "studio.imgix.net",
        }
        run = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", str(shoot), "--profile", "2001",
             "--export", "--deliver", "--json"],
            env=env, capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
        if run.returncode != 0:
            raise SystemExit(f"the run failed: {run.stderr[-2000:]}")
        [job] = json.loads(run.stdout)
        seconds = asyncio.run(stage_seconds(db_url, job["id"]))
        with urllib.request.urlopen(f"{box.base_url}/_sandbox/ledger", timeout=10) as answer:
            imgix = json.load(answer)["imgix"]
    best = (photos - 1) / UPLOADS_PER_SECOND
    uploads = sum(asset["uploads"] for asset in imgix["assets"].values())
    print(f"photos delivered        {len(imgix['assets'])} ({uploads} uploads)")
    print(f"delivery stage          {seconds:.1f} s")
    print(f"best the limit allows   {best:.1f} s ({photos} uploads at {UPLOADS_PER_SECOND:g}/s)")
    print(f"over the best           {100 * (seconds / best - 1):+.1f} % (goal: within 5 %)")
    print(f"429s served             {imgix['throttled']} (goal: none)")


if __name__ == "__main__":
    main()
