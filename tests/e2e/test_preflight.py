"""Nothing is paid for that cannot be brought back: the check before anything is sent, for real.

Real `orchestrator run` processes against a real sandbox. A shoot on a read-only card is
refused before the upload (and runs end to end with `--output DIR`, in the same layout as in
the shoot folder); a disk too small is refused up front with the amount missing; three wrong
or missing settings of three services are named in one run; a wrong imgix key or a spent
Imagga quota is refused before Imagen is asked anything. The sandbox ledger shows what was sent.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.helpers import cli_env, ledger, orchestrator, sandbox_process
from tests.resume_support import stored_jobs, write_big_jpeg
from tests.tagging_support import IMAGGA_ENV

PINNED = "the-right-key-0123"
"""The only key the sandbox's Imagen and imgix take here."""

SQLITE_ONLY = pytest.mark.parametrize("db_backend", ["sqlite"])
"""What is checked is the file system, not the database."""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2", "--api-key", PINNED) as url:
        yield url


def env_for(url: str, db_url: str, **extra: str) -> dict[str, str]:
    """Imagen, Imagga and imgix (on a Source of its own) configured right."""
    source = uuid.uuid4().hex[:24]
    right = {
        "IMAGEN_API_KEY": PINNED,
        "IMAGGA_API_URL": f"{url}/imagga/v2",
        **IMAGGA_ENV,
        "IMGIX_API_URL": f"{url}/imgix/api/v1",
        "IMGIX_API_KEY": PINNED,
        "IMGIX_SOURCE_ID": source,
        "IMGIX_DOMAIN": f"{source}.imgix.net",
    }
    return cli_env(f"{url}/v1", db_url, **{**right, **extra})


def imagga_control(url: str, **body: Any) -> None:
    request = urllib.request.Request(
        f"{url}/_sandbox/imagga", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10):
        pass


@pytest.fixture(autouse=True)
def imagga_as_configured(sandbox_url: str) -> Iterator[None]:
    """Imagga takes the configured credentials and has its quota; put back after each test."""
    right = {"credentials": list(IMAGGA_ENV.values()), "monthly_processed": 0}
    imagga_control(sandbox_url, **right)
    yield
    imagga_control(sandbox_url, **right)


def sent(url: str) -> dict[str, int]:
    """What the sandbox was sent so far: projects, uploads, Imagga requests, imgix assets."""
    seen = ledger(url)
    return {
        "projects": len(seen["projects"]),
        "uploads": sum(
            f["uploads_completed"] for p in seen["projects"] for f in p["files"].values()
        ),
        "tagged": seen["imagga"]["tag_requests"],
        "assets": len(seen["imgix"]["assets"]),
    }


def mount_or_skip(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip()})")


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A folder to fill, and the same folder mounted read-only elsewhere (a card, a share):
    read-only even to root, which passes permission bits."""
    writable, card = tmp_path / "filled", tmp_path / "card"
    writable.mkdir()
    card.mkdir()
    mount_or_skip(["mount", "--bind", str(writable), str(card)])
    try:
        mount_or_skip(["mount", "-o", "remount,ro,bind", str(card)])
        yield writable, card
    finally:
        subprocess.run(["umount", "-l", str(card)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, unmounted afterwards."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mount_or_skip(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)])
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def make_card(folder: Path) -> list[str]:
    """A card of two bodies' folders with RAW and JPEG (two jobs, per-type output folders)."""
    make_sample_shoot(folder / "Card 1", raw=1, jpeg=1, seed=1)
    make_sample_shoot(folder / "Card 2", raw=1, jpeg=1, seed=2)
    for path in sorted((folder / "Card 2").iterdir()):
        path.rename(path.with_name(path.name.replace("IMG_", "DSC_")))
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def tree(folder: Path) -> list[str]:
    """Every file under `folder`, relative to it."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def run(folder: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return orchestrator(
        "run", str(folder), "--profile", "1001", "--profile", "2001", "--export", "--json",
        *extra, env=env, timeout=180,
    )  # fmt: skip


@SQLITE_ONLY
def test_a_read_only_card_is_refused_before_the_upload_and_runs_with_output(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, read_only: tuple[Path, Path]
) -> None:
    filled, card = read_only
    photos = make_card(filled)
    env = env_for(sandbox_url, migrated_db_url)
    before = sent(sandbox_url)

    refused = run(card, env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = " ".join(refused.stderr.split())
    assert f"cannot write the outputs into {card / 'edited'}" in message
    assert "Read-only file system" in message and "--output DIR" in message
    assert sent(sandbox_url) == before  # no project, no upload
    assert stored_jobs(migrated_db_url, card) == []  # no job to trap the folder's layout

    # The same card with --output: the outputs land under DIR as they would in the folder.
    out = tmp_path / "edits"
    done = run(card, env, "--output", str(out), "--deliver")
    assert done.returncode == 0, done.stderr[-3000:]
    assert tree(filled) == photos  # nothing written to the card
    copy = tmp_path / "copy"
    shutil.copytree(filled, copy)
    in_place = run(copy, env)
    assert in_place.returncode == 0, in_place.stderr[-3000:]
    outputs = [f for f in tree(copy) if f.startswith(("edited/", "exported/"))]
    assert len(outputs) == 2 * len(photos)
    assert [f for f in tree(out) if not f.startswith("delivered/")] == outputs
    assert "edited/RAW/Card 2/DSC_0001.xmp" in outputs  # the layout: type, then subfolder
    delivered = json.loads((out / "delivered" / "delivery.json").read_text())
    assert sorted(record["photo"] for record in delivered) == [  # one delivery, RAW and JPEG
        "Card 1/IMG_0001.CR2",
        "Card 1/IMG_0002.jpg",
        "Card 2/DSC_0001.CR2",
        "Card 2/DSC_0002.jpg",
    ]
    assert [job["state"] for job in stored_jobs(migrated_db_url, card)] == ["completed"] * 2


@SQLITE_ONLY
def test_a_disk_too_small_is_refused_up_front_with_the_amount_missing(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, small_disk: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    write_big_jpeg(shoot / "IMG_0003.jpg", 2_000_000, __import__("random").Random(3))
    env = env_for(sandbox_url, migrated_db_url)
    before = sent(sandbox_url)

    refused = run(shoot, env, "--output", str(small_disk))
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = " ".join(refused.stderr.split())
    assert "not enough room for the outputs in" in message, message
    found = re.search(
        r"about ([\d.,]+) MB will come back .* ([\d.,]+) MB is free .* ([\d.,]+) MB missing",
        message,
    )
    assert found, message
    coming, free, missing = (float(g.replace(",", "")) for g in found.groups())
    assert coming >= 4.0  # the 2 MB JPEG's edit and its export, at least
    disk = os.statvfs(small_disk)
    assert abs(free - disk.f_bavail * disk.f_frsize / 1e6) < 0.1
    assert missing > coming - free
    assert sent(sandbox_url) == before
    assert list(small_disk.iterdir()) == []  # no .partial filling the disk


def test_three_settings_wrong_or_missing_are_named_in_one_run(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    env = env_for(
        sandbox_url,
        migrated_db_url,
        IMAGEN_API_KEY="wrong-imagen-key-zq9",
        IMGIX_API_KEY="wrong-imgix-key-zq9",
    )
    del env["IMAGGA_API_SECRET"]
    before = sent(sandbox_url)

    refused = orchestrator(
        "run", str(shoot), "--profile", "2001", "--export", "--tag", "--deliver", env=env
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = " ".join(refused.stderr.split())
    assert "3 problems to put right first" in message
    assert "IMAGEN_API_KEY" in message
    assert "IMAGGA_API_SECRET" in message
    assert "imgix rejected the key in IMGIX_API_KEY (HTTP 401)" in message
    assert "zq9" not in refused.stdout + refused.stderr
    assert sent(sandbox_url) == before
    assert stored_jobs(migrated_db_url, shoot) == []


def test_a_wrong_imgix_key_is_refused_before_anything_is_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=2)
    env = env_for(sandbox_url, migrated_db_url, IMGIX_API_KEY="wrong-imgix-SECRET")
    before = sent(sandbox_url)
    command = ("run", str(shoot), "--profile", "2001", "--export", "--deliver")

    refused = orchestrator(*command, env=env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    assert "1 problem to put right first" in refused.stderr
    assert "imgix rejected the key in IMGIX_API_KEY (HTTP 401)" in " ".join(refused.stderr.split())
    assert sent(sandbox_url) == before  # the ledger: no project, no upload, no asset

    fixed = orchestrator(*command, env={**env, "IMGIX_API_KEY": PINNED})
    assert fixed.returncode == 0, fixed.stderr[-3000:]


def test_a_spent_imagga_quota_is_refused_before_the_edit_is_paid_for(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=3)
    imagga_control(sandbox_url, monthly_limit=1000, monthly_processed=999)
    env = env_for(sandbox_url, migrated_db_url)
    before = sent(sandbox_url)

    refused = orchestrator(
        "run", str(shoot), "--profile", "2001", "--export", "--tag", "--moderate", env=env
    )
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = " ".join(refused.stderr.split())
    assert "has 1 of 1000 requests left and 6 are needed" in message, message
    assert "for 3 photos" in message and "--tag-anyway" in message
    assert sent(sandbox_url) == before
