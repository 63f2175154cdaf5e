"""Delivery to imgix end to end, as real processes against a real sandbox on a real port.

A shoot with `--export`, keywords (`tests/delivery_support.py` stands in for the keywording
stage) and `--deliver`: every asset's bytes are the exported file's, its categories the
photo's keywords, delivery.json and index.html list every photo with signed URLs, a flagged
photo is held back; SIGKILL at each delivery checkpoint and at random instants uploads each
asset once (at most `--concurrency` repeats a kill); a review edit is redelivered with one
overwrite and one purge, with no Imagen settings at all; lower limits and faults see no 429;
bad keys, missing permissions, missing settings and escaping path templates are refused
clearly.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from orchestrator.sandbox.samples import make_sample_shoot
from orchestrator.store.queries import PhaseDone, Store
from tests.delivery_support import FLAGGED, ODD_KEYWORD, keywords_for, tag_details
from tests.helpers import cli_env, ledger, md5_of, orchestrator, sandbox_process
from tests.resume_support import CONCURRENCY, chaos_seed, stored_jobs, write_big_jpeg

REPO = Path(__file__).resolve().parents[2]
TOKEN = "secure-url-token-0123"


@pytest.fixture(scope="module")
def sandbox_url() -> object:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def delivery_env(sandbox_url: str, db_url: str, **extra: str) -> dict[str, str]:
    """The CLI's environment with imgix configured on a Source of its own (a fresh id)."""
    source = uuid.uuid4().hex[:24]
    imgix = {
        "IMGIX_API_URL": f"{sandbox_url}/imgix/api/v1",
        "IMGIX_API_KEY": "imgix-key-SECRET-42",
        "IMGIX_SOURCE_ID": source,
        "IMGIX_DOMAIN": f"{source}.imgix.net",  # purges of one test never meet another's
    }
    return cli_env(f"{sandbox_url}/v1", db_url, **{**imgix, **extra})


def make_shoot(folder: Path) -> list[str]:
    """Six small JPEGs and a 2 MB one (kills can land mid-upload); their names."""
    paths = make_sample_shoot(folder, raw=0, jpeg=6, seed=3)
    paths.append(write_big_jpeg(folder / "IMG_0007.jpg", 2_000_000, random.Random(7)))
    return sorted(p.name for p in paths)


def run_tagged(
    shoot: Path, env: dict[str, str], *template: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.delivery_support", str(shoot), *template],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
    )


def start_tagged(shoot: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.delivery_support", str(shoot)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def imgix_assets(sandbox_url: str, env: dict[str, str]) -> dict[str, dict[str, Any]]:
    """The Source's assets in the ledger, by origin path."""
    prefix = env["IMGIX_SOURCE_ID"] + "/"
    return {
        key.removeprefix(prefix): value
        for key, value in ledger(sandbox_url)["imgix"]["assets"].items()
        if key.startswith(prefix)
    }


def signed(url: str, token: str) -> bool:
    """Whether an imgix URL carries the signature imgix computes with the token."""
    parts = urlsplit(url)
    params = parts.query.split("&")
    rest = "&".join(p for p in params if not p.startswith("s="))
    base = token + parts.path + (f"?{rest}" if rest else "")
    return f"s={hashlib.md5(base.encode()).hexdigest()}" in params


def check_delivered(
    sandbox_url: str, env: dict[str, str], shoot: Path, files: list[str], *, kills: int = 0
) -> dict[str, dict[str, Any]]:
    """Every photo but the flagged one on imgix once (repeats bounded by the kills), with
    the exported bytes, its keywords as categories, the job's custom fields; delivery.json
    and index.html listing each with signed URLs."""
    [job] = stored_jobs(env["ORCH_DATABASE_URL"], shoot)
    assert job["state"] == "completed", job["last_error"]
    assets = imgix_assets(sandbox_url, env)
    delivered = sorted(f for f in files if f != FLAGGED)
    assert sorted(path.split("/", 1)[1] for path in assets) == delivered
    uploads = [a["uploads"] for a in assets.values()]
    assert sum(uploads) - len(uploads) <= kills * CONCURRENCY
    for path, found in assets.items():
        name = path.split("/", 1)[1]
        assert path == f"{shoot.name}/{name}"
        assert found["md5"] == md5_of(shoot / "exported" / name)
        assert found["categories"] == keywords_for(name)
        fields = found["custom_fields"]
        assert fields["orchestrator_job"] == job["id"]
        assert fields["orchestrator_md5"] == found["md5"]
        assert fields["shoot"] == shoot.name and fields["imagen_profile"] == "LOVE & LIGHT JPG"
        assert fields["imagen_project"]
    records = json.loads((shoot / "delivered" / "delivery.json").read_text())
    assert [r["photo"] for r in records] == delivered
    page = (shoot / "delivered" / "index.html").read_text()
    for record in records:
        assert record["keywords"] == keywords_for(record["photo"])
        assert signed(record["url"], TOKEN)
        candidates = [c.strip().rsplit(" ", 1)[0] for c in record["srcset"].split(",")]
        assert candidates and all(signed(c, TOKEN) for c in candidates)
        assert record["url"].replace("&", "&amp;") in page
    assert ODD_KEYWORD not in page and "&lt;script&gt;" in page
    assert FLAGGED in page.split("Not delivered", 1)[1]
    return assets


def test_a_shoot_is_delivered_with_its_keywords_and_signed_urls(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "Smith wedding"
    files = make_shoot(shoot)
    env = delivery_env(sandbox_url, migrated_db_url, IMGIX_SECURE_URL_TOKEN=TOKEN)
    done = run_tagged(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_delivered(sandbox_url, env, shoot, files)
    [job] = stored_jobs(migrated_db_url, shoot)
    assert any(FLAGGED in message for kind, message in job["events"] if kind == "note")
    listed = orchestrator("deliveries", job["id"][:8], "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    statuses = {p["photo"]: p["status"] for p in json.loads(listed.stdout)}
    assert statuses == {name: "held" if name == FLAGGED else "delivered" for name in files}
    assert "SECRET" not in listed.stdout + listed.stderr + done.stderr

    again = run_tagged(shoot, env)  # completed: nothing is sent again
    assert again.returncode == 0, again.stderr[-3000:]
    assert all(a["uploads"] == 1 for a in imgix_assets(sandbox_url, env).values())


KILLS = [
    # (crash point, the job's state when the process died)
    ("after_checkpoint:13", "delivering"),  # entered the stage
    ("before_deliver_upload:1", "delivering"),  # intent recorded, nothing sent
    ("after_deliver_upload:1", "delivering"),  # uploaded, metadata not written
    ("after_deliver:1", "delivering"),  # delivered, not yet checkpointed
    ("after_deliver:4", "delivering"),  # mid-stage, some checkpointed
    ("after_checkpoint:14", "completed"),  # left the stage, files written
]


@pytest.mark.parametrize(("point", "state_at_kill"), KILLS, ids=[p for p, _ in KILLS])
def test_delivery_resumes_after_a_kill_at_each_checkpoint(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, point: str, state_at_kill: str
) -> None:
    shoot = tmp_path / "shoot"
    files = make_shoot(shoot)
    env = delivery_env(sandbox_url, migrated_db_url, IMGIX_SECURE_URL_TOKEN=TOKEN)
    killed = run_tagged(shoot, {**env, "ORCH_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == state_at_kill
    before = {name for name, p in job["photos"].items() if p.done("deliver")}
    uploads_before = {p: a["uploads"] for p, a in imgix_assets(sandbox_url, env).items()}

    done = run_tagged(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assets = check_delivered(sandbox_url, env, shoot, files, kills=1)
    for name in before:  # checkpointed photos are never sent again
        assert assets[f"shoot/{name}"]["uploads"] == uploads_before[f"shoot/{name}"] == 1


def test_delivery_survives_kills_at_random_instants(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    seed = chaos_seed()
    rng = random.Random(seed)
    why = f"(ORCH_CHAOS_SEED={seed})"
    shoot = tmp_path / "shoot"
    files = make_shoot(shoot)
    env = delivery_env(sandbox_url, migrated_db_url, IMGIX_SECURE_URL_TOKEN=TOKEN)
    kills = 0
    for _ in range(3):
        process = start_tagged(shoot, env)
        if not _wait_for_delivering(migrated_db_url, shoot, process):
            break
        time.sleep(rng.uniform(0.0, 2.0))  # the chaos: a kill at a random instant of delivery
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.communicate(timeout=60)
    done = run_tagged(shoot, env)
    assert done.returncode == 0, f"{why} {done.stderr[-3000:]}"
    check_delivered(sandbox_url, env, shoot, files, kills=kills)


def _wait_for_delivering(db_url: str, shoot: Path, process: subprocess.Popen[str]) -> bool:
    """Wait until the job is delivering; False if the process ended first."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        jobs = stored_jobs(db_url, shoot)
        if jobs and jobs[0]["state"] == "delivering":
            return True
        if process.poll() is not None:
            return False
        time.sleep(0.05)
    raise AssertionError("the job never reached delivering")


def _seed_tags(db_url: str, job_id: str, tags: dict[str, dict[str, Any]]) -> None:
    """Record `tag` phase details for photos, as a person's review on the web page would."""

    async def write() -> None:
        store = Store.open(db_url)
        try:
            lease = await store.claim(job_id, "review-page", 30)
            for photo in await store.photos(job_id):
                if photo.file_name in tags:
                    details = tags[photo.file_name]
                    await store.checkpoint(lease, photo.id, PhaseDone("tag", details=details))
            await store.release(lease)
        finally:
            await store.close()

    asyncio.run(write())


def test_a_review_edit_is_redelivered_with_one_overwrite_and_one_purge(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / f"shoot-{uuid.uuid4().hex[:8]}"  # paths of its own in the ledger
    files = make_shoot(shoot)
    env = delivery_env(sandbox_url, migrated_db_url)
    done = orchestrator(
        "run", str(shoot), "--profile", "2001", "--export", "--deliver", "--json", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = json.loads(done.stdout)
    assets = imgix_assets(sandbox_url, env)
    assert len(assets) == len(files) and all(a["categories"] == [] for a in assets.values())
    edited, relabelled, untouched = files[0], files[2], files[3]  # files[1] is FLAGGED
    with (shoot / "exported" / edited).open("ab") as export:
        export.write(b"keywords written in by the review")  # the file changed
    _seed_tags(
        migrated_db_url,
        job["id"],
        {
            edited: tag_details(edited, keywords=["bride", "veil"], source="reviewed"),
            relabelled: tag_details(relabelled, keywords=["groom"], source="reviewed"),
        },
    )
    purges_before = len(ledger(sandbox_url)["imgix"]["purges"])
    # Delivering again and purging talk to imgix alone: Imagen's settings are not needed.
    imgix_only = {k: v for k, v in env.items() if not k.startswith("IMAGEN_")}

    again = orchestrator("deliver", job["id"][:8], "--json", env=imgix_only)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["delivered"] == 2
    after = imgix_assets(sandbox_url, env)
    one = after[f"{shoot.name}/{edited}"]
    assert (one["uploads"], one["purges"], one["categories"]) == (2, 1, ["bride", "veil"])
    assert one["md5"] == md5_of(shoot / "exported" / edited)
    two = after[f"{shoot.name}/{relabelled}"]  # keywords only: metadata, no upload, no purge
    assert (two["uploads"], two["purges"], two["categories"]) == (1, 0, ["groom"])
    assert after[f"{shoot.name}/{untouched}"]["uploads"] == 1
    assert len(ledger(sandbox_url)["imgix"]["purges"]) == purges_before + 1
    records = {
        r["photo"]: r for r in json.loads((shoot / "delivered" / "delivery.json").read_text())
    }
    assert records[edited]["keywords"] == ["bride", "veil"]

    unchanged = orchestrator("deliver", job["id"][:8], "--json", env=imgix_only)
    assert json.loads(unchanged.stdout)["delivered"] == 0
    assert imgix_assets(sandbox_url, env) == after
    purged = orchestrator("purge", job["id"][:8], edited, "--json", env=imgix_only)  # 10 s: 409
    assert purged.returncode == 0, purged.stderr
    assert imgix_assets(sandbox_url, env)[f"{shoot.name}/{edited}"]["purges"] == 1


def test_lower_limits_and_faults_see_no_429_and_deliver_everything(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    files = make_shoot(shoot)
    faults = "error_5xx=0.05,reset=0.03,slow=0.02"
    with sandbox_process(
        "--edit-seconds",
        "0.2",
        "--imgix-rate-scale",
        "0.5",
        "--faults",
        faults,
        "--seed",
        "11",
        "--slow-seconds",
        "0.2",
    ) as url:
        env = delivery_env(url, migrated_db_url, IMGIX_RATE_SCALE="0.5")
        done = orchestrator(
            "run", str(shoot), "--profile", "2001", "--export", "--deliver", env=env, timeout=240
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = ledger(url)
    assets = imgix_assets_of(seen, env)
    assert sorted(p.split("/", 1)[1] for p in assets) == files
    assert seen["imgix"]["throttled"] == 0
    assert all(
        a["md5"] == md5_of(shoot / "exported" / p.split("/", 1)[1]) for p, a in assets.items()
    )
    assert sum(seen["faults"].values()) > 0  # the faults did happen


def imgix_assets_of(seen: dict[str, Any], env: dict[str, str]) -> dict[str, dict[str, Any]]:
    prefix = env["IMGIX_SOURCE_ID"] + "/"
    return {
        k.removeprefix(prefix): v
        for k, v in seen["imgix"]["assets"].items()
        if k.startswith(prefix)
    }


@pytest.mark.parametrize(
    ("args", "drop", "expected"),
    [
        ((), ("IMGIX_API_KEY", "IMGIX_DOMAIN"), "--deliver needs IMGIX_API_KEY, IMGIX_DOMAIN"),
        (("--deliver-path", "../{file_name}"), (), "stay inside its prefix"),
        (("--deliver-path", "/clients/{file_name}"), (), "must be relative"),
        (("--deliver-path", "{job_name}/../../{file_name}"), (), "stay inside its prefix"),
        (("--deliver-path", "{job_name}"), (), "must name {file_name}"),
        (("--deliver-path", "{secret}/{file_name}"), (), "may name only"),
    ],
    ids=["missing-settings", "dotdot", "absolute", "climbing", "one-path", "unknown-field"],
)
def test_what_delivery_cannot_do_is_refused_before_anything_is_sent(
    sandbox_url: str,
    migrated_db_url: str,
    tmp_path: Path,
    args: tuple[str, ...],
    drop: tuple[str, ...],
    expected: str,
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=0, jpeg=1)
    env = {k: v for k, v in delivery_env(sandbox_url, migrated_db_url).items() if k not in drop}
    projects = len(ledger(sandbox_url)["projects"])
    refused = orchestrator(
        "run", str(shoot), "--profile", "2001", "--export", "--deliver", *args, env=env
    )
    assert refused.returncode == 2, refused.stderr
    assert expected in refused.stderr.replace("\n", " ")
    assert len(ledger(sandbox_url)["projects"]) == projects  # nothing was sent
    assert not (shoot / "delivered").exists()


PINNED = "the-one-key-0123"


def test_a_key_that_lacks_a_permission_pauses_the_job_with_the_reason_and_the_fix_resumes_it(
    migrated_db_url: str, tmp_path: Path
) -> None:
    """The check before sending reads the Source, which a browse-only key may; the upload it
    may not: the job stops in delivering, saying why (never an empty last error)."""
    shoot = tmp_path / "shoot"
    files = make_sample_shoot(shoot, raw=0, jpeg=2)
    with sandbox_process("--edit-seconds", "0.2") as url:
        good = delivery_env(url, migrated_db_url)
        command = ("run", str(shoot), "--profile", "2001", "--export", "--deliver", "--json")
        paused = orchestrator(*command, env={**good, "IMGIX_API_KEY": "browse-only-SECRET"})
        assert paused.returncode == 1, paused.stderr
        expected = "lacks the 'Asset Manager Edit' permission"
        assert expected in paused.stderr.replace("\n", " ")
        assert "SECRET" not in paused.stdout + paused.stderr
        [reported] = json.loads(paused.stdout)
        assert expected in reported["paused"]
        [job] = stored_jobs(migrated_db_url, shoot)
        assert job["state"] == "delivering"  # kept: with the key put right, running again goes on
        assert expected in job["last_error"]
        assert imgix_assets(url, good) == {}
        fixed = orchestrator(*command, env=good)
        assert fixed.returncode == 0, fixed.stderr[-3000:]
        assert len(imgix_assets(url, good)) == len(files)


def test_an_export_of_30_mb_is_refused_with_the_fix_and_nothing_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    """The README's figure: files of 30 MB (decimal) or more are refused, the rest delivered."""
    shoot = tmp_path / f"shoot-{uuid.uuid4().hex[:8]}"
    files = make_shoot(shoot)
    env = delivery_env(sandbox_url, migrated_db_url)
    done = orchestrator(
        "run", str(shoot), "--profile", "2001", "--export", "--deliver", "--json", env=env
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = json.loads(done.stdout)
    big, small = files[0], files[2]
    os.truncate(shoot / "exported" / big, 30_000_000)  # re-exported larger
    with (shoot / "exported" / small).open("ab") as export:
        export.write(b"changed too")
    before = imgix_assets(sandbox_url, env)

    again = orchestrator("deliver", job["id"][:8], "--json", env=env)
    assert again.returncode != 0
    assert "its export is 30.0 MB; imgix's upload takes files under 30 MB" in again.stderr
    after = imgix_assets(sandbox_url, env)
    assert after[f"{shoot.name}/{big}"] == before[f"{shoot.name}/{big}"]  # nothing sent
    assert after[f"{shoot.name}/{small}"]["uploads"] == 2
