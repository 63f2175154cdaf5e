"""A wedding, start to finish (issue 25's "done when"): RAW and JPEG in card folders, culled,
the second shooter's card late; one shoot, one review, one delivery, every photo edited once
(the sandbox ledger), keywords and ratings read back by exiftool; the shared delivery killed
at its crash points and resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from tests.e2e.test_shoot_follow_up import rated_raw, xmp_packet
from tests.helpers import cli_env, ledger, orchestrator, sandbox_process
from tests.tagging_support import IMAGGA_ENV

RAW_PROFILE, JPEG_PROFILE = "1001", "2001"
KEYWORD = "Smith wedding"
RATINGS = {
    "Ceremony/Card 1/DSC_1000.CR2": 5,
    "Ceremony/Card 1/DSC_1001.CR2": 4,
    "Ceremony/Card 1/DSC_1002.CR2": 1,
    "Ceremony/Card 1/DSC_1003.CR2": -1,
    "Ceremony/Card 1/DSC_2000.JPG": 4,
    "Ceremony/Card 1/DSC_2001.JPG": 5,
    "Ceremony/Card 1/DSC_2002.JPG": 2,
}
LATE = {"Reception/Card 2/IMG_3000.CR2": 5, "Reception/Card 2/IMG_4000.JPG": 3}
PICKS = 3


def _card(shoot: Path, ratings: dict[str, int], seed: int) -> None:
    """RAWs rated in themselves; JPEGs (real ones) rated by their culling tool's sidecar."""
    jpegs = [p for p in ratings if p.endswith(".JPG")]
    made = make_sample_shoot(shoot / "staging", raw=0, jpeg=len(jpegs), seed=seed)
    for rel, source in zip(jpegs, made, strict=True):
        target = shoot / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        source.rename(target)
        target.with_suffix(".xmp").write_bytes(xmp_packet(ratings[rel]))
    (shoot / "staging").rmdir()
    for rel, rating in ratings.items():
        if rel.endswith(".CR2"):
            rated_raw(shoot / rel, rating, os.urandom(4096))


def _env(sandbox: str, db_url: str) -> dict[str, str]:
    source = uuid.uuid4().hex[:24]
    return cli_env(
        f"{sandbox}/v1",
        db_url,
        IMAGGA_API_URL=f"{sandbox}/imagga/v2",
        IMGIX_API_URL=f"{sandbox}/imgix/api/v1",
        IMGIX_API_KEY="imgix-key-SECRET-42",
        IMGIX_SOURCE_ID=source,
        IMGIX_DOMAIN=f"{source}.imgix.net",
        **IMAGGA_ENV,
    )


def _run(shoot: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return orchestrator(
        "run",
        str(shoot),
        "-p",
        RAW_PROFILE,
        "-p",
        JPEG_PROFILE,
        "--export",
        "--tag",
        "--review",
        "--deliver",
        "--keyword",
        KEYWORD,
        "--min-rating",
        str(PICKS),
        *extra,
        env=env,
        timeout=240,
    )


def _exif(path: Path) -> dict[str, Any]:
    found = subprocess.run(
        ["exiftool", "-j", "-XMP-dc:Subject", "-XMP-xmp:Rating", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    tags: dict[str, Any] = json.loads(found.stdout)[0]
    return tags


def _edit_until_review_then_deliver(shoot: Path, env: dict[str, str], *extra: str) -> str:
    """Run (it waits for the review: exit 4), approve the shoot once, run on to delivery; the
    last run's output."""
    waiting = _run(shoot, env, *extra)
    assert waiting.returncode == 4, waiting.stderr[-3000:]
    approved = orchestrator("approve", shoot.name, "--json", env=env)
    assert approved.returncode == 0, approved.stderr[-3000:]
    done = _run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _assets(sandbox: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    prefix = env["IMGIX_SOURCE_ID"] + "/"
    return {
        key.removeprefix(prefix): value
        for key, value in ledger(sandbox)["imgix"]["assets"].items()
        if key.startswith(prefix)
    }


def _check_wedding(sandbox: str, env: dict[str, str], shoot: Path, *, kills: int = 0) -> None:
    """One shoot of four jobs, each photo edited once, one delivery holding every pick (an
    asset sent again at most once per kill and photo in flight), keywords and ratings in
    the files."""
    picked = {p for p, r in {**RATINGS, **LATE}.items() if r >= PICKS}
    [listed] = json.loads(orchestrator("status", "--json", env=env).stdout)
    assert (listed["name"], listed["state"], listed["photos"]) == (shoot.name, "completed", 6)
    assert len(listed["jobs"]) == 4 and listed["not_picked"] == 3
    # Every photo edited exactly once, over the shoot's four projects.
    projects = [p for p in ledger(sandbox)["projects"] if p["name"].startswith(shoot.name)]
    assert len(projects) == 4 and all(p["edit_requests"] == 1 for p in projects)
    sent = [name for p in projects for name in p["files"]]
    assert sorted(sent) == sorted(Path(p).name for p in picked)
    assert all(f["uploads_completed"] == 1 for p in projects for f in p["files"].values())
    # One delivery: one folder, one delivery.json, one contact sheet, the shoot's folders kept.
    delivered = shoot / "delivered"
    assert sorted(p.name for p in delivered.iterdir()) == [
        ".delivery.lock",
        "delivery.json",
        "index.html",
    ]
    records = json.loads((delivered / "delivery.json").read_text())
    expected_paths = {
        f"{shoot.name}/{p if p.endswith('.JPG') else p.replace('.CR2', '.jpg')}" for p in picked
    }
    assert {r["origin_path"] for r in records} == expected_paths
    assert {r["shoot"] for r in records} == {shoot.name}
    assert all(KEYWORD in r["keywords"] for r in records)
    assets = _assets(sandbox, env)
    assert set(assets) == expected_paths
    uploads = [a["uploads"] for a in assets.values()]
    assert sum(uploads) - len(uploads) <= kills * CONCURRENCY
    assert "%20%28JPG%29" not in (delivered / "index.html").read_text()
    umask = os.umask(0)
    os.umask(umask)
    for name in ("delivery.json", "index.html"):
        assert (delivered / name).stat().st_mode & 0o777 == 0o666 & ~umask, name
    # Keywords and ratings in the exported files, read back by exiftool.
    for rel in picked:
        exported = next((shoot / "exported").rglob(Path(rel).stem + ".*"))
        tags = _exif(exported)
        subjects = tags.get("Subject", [])
        assert KEYWORD in (subjects if isinstance(subjects, list) else [subjects]), rel
        assert tags.get("Rating") == {**RATINGS, **LATE}[rel], rel


def test_a_wedding_is_one_shoot_one_review_one_delivery(tmp_path: Path) -> None:
    shoot = tmp_path / "smith-wedding"
    _card(shoot, RATINGS, seed=1)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = _env(sandbox, f"sqlite:///{tmp_path / 'orchestrator.db'}")
        first = _edit_until_review_then_deliver(shoot, env)
        assert f"contact sheet: {shoot / 'delivered' / 'index.html'}" in first
        _card(shoot, LATE, seed=2)  # the second shooter's card, after the delivery
        _edit_until_review_then_deliver(shoot, env, "--add")
        _check_wedding(sandbox, env, shoot)
        _check_shoot_actions(env, shoot)


def _json(*args: str, env: dict[str, str]) -> Any:
    done = orchestrator(*args, "--json", env=env, timeout=120)
    assert done.returncode == 0, (args, done.stderr[-3000:])
    return json.loads(done.stdout)


def _check_shoot_actions(env: dict[str, str], shoot: Path) -> None:
    """The delivery's operator commands name the shoot, and act on every job of it; a job's
    id still names that job alone."""
    picked = {p for p, r in {**RATINGS, **LATE}.items() if r >= PICKS}
    listed = _json("deliveries", shoot.name, env=env)
    assert {p["photo"] for p in listed if p["status"] == "delivered"} == picked
    jobs = {p["job"] for p in listed}
    assert len(jobs) == 4
    again = _json("deliver", shoot.name, env=env)
    assert (again["delivered"], again["unchanged"], again["failed"]) == (0, len(picked), [])
    assert {j["job"] for j in again["jobs"]} == jobs and again["skipped"] == []
    verified = _json("deliver", str(shoot), "--verify", env=env)
    assert verified["checked"] == len(picked) and verified["repaired"] == 0
    assert (verified["missing"], verified["extra"], verified["different"]) == ([], [], [])
    assert len(verified["jobs"]) == 4 and "listed" not in verified
    purged = _json("purge", shoot.name, env=env)["purged"]
    assert len(purged) == len(picked)
    [one] = _json("purge", shoot.name, "DSC_2001.JPG", env=env)["purged"]
    assert one.endswith("/DSC_2001.JPG")
    job = sorted(jobs)[0]
    alone = _json("deliver", job, env=env)
    assert [j["job"] for j in alone["jobs"]] == [job]
    keyless = {k: v for k, v in env.items() if k != "IMGIX_API_KEY"}
    refused = orchestrator("deliver", shoot.name, env=keyless)
    assert refused.returncode == 2
    assert "delivering needs IMGIX_API_KEY" in refused.stderr.replace("\n", " ")


CONCURRENCY = 8
"""Transfers in flight at once by default: what one kill may send again."""

SHARED_DELIVERY_KILLS = ("after_deliver_upload:1", "after_deliver:1", "after_deliver:2")
"""Kills inside the delivery the wedding's jobs share (the follow-ups deliver into it)."""


@pytest.mark.parametrize("point", SHARED_DELIVERY_KILLS)
def test_the_shared_delivery_killed_at_its_crash_points_resumes_once(
    tmp_path: Path, point: str
) -> None:
    shoot = tmp_path / "smith-wedding"
    _card(shoot, RATINGS, seed=1)
    with sandbox_process("--edit-seconds", "0.2") as sandbox:
        env = _env(sandbox, f"sqlite:///{tmp_path / 'orchestrator.db'}")
        _edit_until_review_then_deliver(shoot, env)
        _card(shoot, LATE, seed=2)
        waiting = _run(shoot, env, "--add")
        assert waiting.returncode == 4, waiting.stderr[-3000:]
        assert orchestrator("approve", shoot.name, env=env).returncode == 0
        killed = _run(shoot, {**env, "ORCH_CRASH_AT": point})
        assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
        resumed = _run(shoot, env)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        _check_wedding(sandbox, env, shoot, kills=1)
