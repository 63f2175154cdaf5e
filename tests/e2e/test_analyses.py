"""Colours, faces, people and smart crops end to end: real `orchestrator` processes against the
sandbox on a real port, the files read back with exiftool, delivery.json and imgix's assets read
from the disk and the sandbox's ledger.

The faces are checked against an independent reading of the pixels (the sandbox's vision on the
same small copy), the regions against each file's own pixel size (Pillow); each analysis is paid
once per photo in the ledger, also across SIGKILLs.
"""

from __future__ import annotations

import hashlib
import json
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from orchestrator.integrations.downscale import downscale
from orchestrator.sandbox import pictures, vision
from tests.daemon_support import Daemon, daemon_env, wait_for
from tests.e2e.test_tagging import env_for, imagga_control, job_dir
from tests.helpers import ledger, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import IMAGGA_ENV, needs_exiftool

pytestmark = needs_exiftool

CONCURRENCY = 3
ANALYSES = ("--colors", "--faces", "--people", "--smart-crops")
COUNTERS = ("tag_requests", "colors_requests", "faces_requests", "croppings_requests")
REPO = Path(__file__).resolve().parents[2]
KILLS = [
    ("after_imagga_answer:1", "tagging"),  # the first photo's analyses kept, nothing written
    ("after_keywords_written:2", "tagging"),  # files written, not checkpointed
    ("after_grouping_requested", "tagging"),  # walked by the people test
    ("after_index_training_requested", "completed"),  # walked by tests/e2e/test_people_index.py
]
"""Where a run with every analysis is killed (walked with the other points, see
tests/unit/test_crash_points.py), and the state it is left in."""


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def make_people_shoot(folder: Path, photos: int, *, seed: str = "s") -> list[str]:
    """JPEGs of the sandbox's synthetic scenes (people under coloured hats); their names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for number in range(1, photos + 1):
        scene = pictures.synthetic(
            hashlib.md5(f"{seed}{number}".encode()).hexdigest(), long_side=480
        )
        path = folder / f"IMG_{number:04d}.jpg"
        scene.save(path, quality=88)
        names.append(path.name)
    return names


def delivery_env(sandbox_url: str, db_url: str) -> dict[str, str]:
    source = hashlib.md5(db_url.encode() + str(time.monotonic_ns()).encode()).hexdigest()[:20]
    return env_for(
        sandbox_url,
        db_url,
        IMGIX_API_URL=f"{sandbox_url}/imgix/api/v1",
        IMGIX_API_KEY="imgix-key-SECRET-42",
        IMGIX_SOURCE_ID=source,
        IMGIX_DOMAIN=f"{source}.imgix.net",
    )


def run_args(shoot: Path, *extra: str) -> list[str]:
    return [
        "run",
        str(shoot),
        "--profile",
        "2001",
        "--export",
        "--tag",
        *ANALYSES,
        "--concurrency",
        str(CONCURRENCY),
        "--json",
        *extra,
    ]


def run(shoot: Path, env: dict[str, str], *extra: str) -> subprocess.CompletedProcess[str]:
    return orchestrator(*run_args(shoot, *extra), env=env, timeout=180)


def counts(url: str) -> dict[str, int]:
    imagga = ledger(url)["imagga"]
    return {name: int(imagga[name]) for name in COUNTERS}


def exif(path: Path) -> dict[str, Any]:
    """What exiftool reads from the file: keywords, hierarchy, regions (as a structure)."""
    found = subprocess.run(
        ["exiftool", "-j", "-struct", "-G1", "-XMP-dc:Subject", "-XMP-lr:HierarchicalSubject",
         "-XMP-mwg-rs:RegionInfo", "-IPTC:Keywords", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    result: dict[str, Any] = json.loads(found.stdout)[0]
    return result


def as_list(value: Any) -> list[Any]:
    return [] if value is None else value if isinstance(value, list) else [value]


def check_files(url: str, db_url: str, shoot: Path) -> dict[str, dict[str, Any]]:
    """Every photo's exported and edited JPEG carries its keywords, colour words and face
    regions where the tools read them; its details by photo."""
    [job] = stored_jobs(db_url, shoot)
    assert job["state"] == "completed", job["last_error"]
    found = {}
    for photo in job["photos"].values():
        details = photo.phase("tag").details
        found[photo.file_name] = details
        colours = details["colors"]
        assert colours and all(set(c) == {"hex", "percent", "name"} for c in colours)
        words = list(
            dict.fromkeys(
                c["name"][:1].upper() + c["name"][1:] for c in colours if c["percent"] >= 5
            )
        )[:5]
        paths = [Path(job_dir(job, db_url, ref["kind"])) / ref["name"] for ref in details["files"]]
        assert len(paths) == 2
        # The faces, read independently from the same small copy Imagga got.
        small = downscale(paths[0])
        seen = vision.read_bytes(small, hashlib.md5(small).hexdigest())
        assert len(details["faces"]) == len(seen.faces)
        for path in paths:
            tags = exif(path)
            subject = as_list(tags.get("XMP-dc:Subject"))
            assert subject[: len(details["keywords"])] == details["keywords"]
            assert set(words) <= set(subject)
            assert set(words) <= set(as_list(tags.get("IPTC:Keywords")))
            assert [f"Colors|{w}" for w in words] == as_list(tags.get("XMP-lr:HierarchicalSubject"))
            regions = tags.get("XMP-mwg-rs:RegionInfo")
            if not seen.faces:
                assert regions is None
                continue
            with Image.open(path) as picture:
                width, height = picture.size
            assert regions["AppliedToDimensions"] == {"W": width, "H": height, "Unit": "pixel"}
            listed = regions["RegionList"]
            assert len(listed) == len(seen.faces)
            for region, face in zip(listed, seen.faces, strict=True):
                x1, y1, x2, y2 = face.box
                area = region["Area"]
                assert region["Type"] == "Face"
                assert area["Unit"] == "normalized"
                assert area["X"] == pytest.approx((x1 + x2) / 2 / seen.width, abs=1e-4)
                assert area["Y"] == pytest.approx((y1 + y2) / 2 / seen.height, abs=1e-4)
                assert area["W"] == pytest.approx((x2 - x1) / seen.width, abs=1e-4)
    return found


def test_every_analysis_goes_into_the_files_delivery_json_and_imgix(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_people_shoot(shoot, 5)
    env = delivery_env(sandbox_url, migrated_db_url)
    before = counts(sandbox_url)

    done = run(shoot, env, "--deliver")
    assert done.returncode == 0, done.stderr[-3000:]

    details = check_files(sandbox_url, migrated_db_url, shoot)
    after = counts(sandbox_url)
    assert {name: after[name] - before[name] for name in COUNTERS} == dict.fromkeys(
        COUNTERS, len(names)
    )
    assert sum(len(d["faces"]) for d in details.values()) > 0, "the scenes show people"
    records = json.loads((shoot / "delivered" / "delivery.json").read_text())
    assets = ledger(sandbox_url)["imgix"]["assets"]
    assert sorted(r["photo"] for r in records) == sorted(names)
    for record in records:
        mine = details[record["photo"]]
        assert record["colors"] == mine["colors"]
        assert record["faces"] == len(mine["faces"])
        assert record["people"] == []
        point = record["focal_point"]
        assert 0 <= point["x"] <= 1 and 0 <= point["y"] <= 1
        assert point == mine["focal_point"]
        assert set(record["crops"]) == {"1:1", "4:5", "9:16"}
        for ratio, crop in record["crops"].items():
            link = urlsplit(crop)
            assert link.path == urlsplit(record["url"]).path
            query = {k: v[0] for k, v in parse_qs(link.query).items()}
            assert query["fit"] == "crop" and query["crop"] == "focalpoint"
            assert query["ar"] == ratio
            assert float(query["fp-x"]) == pytest.approx(point["x"], abs=1e-4)
            assert float(query["fp-y"]) == pytest.approx(point["y"], abs=1e-4)
        fields = assets[f"{env['IMGIX_SOURCE_ID']}/{record['origin_path']}"]["custom_fields"]
        assert fields["faces"] == str(record["faces"])
        assert float(fields["fp_x"]) == pytest.approx(point["x"], abs=1e-4)
        assert fields["palette"].split()[0] == f"{record['colors'][0]['hex']}:" + format(
            record["colors"][0]["percent"], "g"
        )
    sheet = (shoot / "delivered" / "index.html").read_text()
    assert all(r["crops"]["1:1"].replace("&", "&amp;") in sheet for r in records)

    # Run again: everything is done and kept, nothing is asked again.
    again = run(shoot, env, "--deliver")
    assert again.returncode == 0, again.stderr[-3000:]
    assert counts(sandbox_url) == after


@pytest.mark.parametrize(("point", "state_at_kill"), KILLS[:2], ids=[p for p, _ in KILLS[:2]])
def test_a_kill_at_each_checkpoint_pays_each_analysis_once(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, point: str, state_at_kill: str
) -> None:
    shoot = tmp_path / "shoot"
    names = make_people_shoot(shoot, 4, seed=point)
    env = env_for(sandbox_url, migrated_db_url)
    before = counts(sandbox_url)

    killed = run(shoot, {**env, "ORCH_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == state_at_kill

    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_files(sandbox_url, migrated_db_url, shoot)
    after = counts(sandbox_url)
    for name in COUNTERS:
        assert len(names) <= after[name] - before[name] <= len(names) + CONCURRENCY, name


def test_kills_at_random_instants_pay_each_analysis_once_but_for_those_in_flight(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_people_shoot(shoot, 8, seed="random")
    env = env_for(sandbox_url, migrated_db_url)
    imagga_control(sandbox_url, delay_seconds=0.05)
    rng = random.Random(27)
    before = counts(sandbox_url)
    groupings = ledger(sandbox_url)["imagga"]["groupings_requests"]
    kills = 0
    try:
        for _ in range(3):
            process = subprocess.Popen(
                [sys.executable, "-m", "orchestrator", *run_args(shoot)],
                env=env,
                cwd=REPO,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            asked = sum(counts(sandbox_url).values())
            deadline = time.monotonic() + 120
            while process.poll() is None and time.monotonic() < deadline:
                if sum(counts(sandbox_url).values()) > asked:
                    time.sleep(rng.uniform(0.0, 0.3))
                    break
                time.sleep(0.02)
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                kills += 1
            process.wait(timeout=30)
    finally:
        imagga_control(sandbox_url, delay_seconds=0.0)

    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_files(sandbox_url, migrated_db_url, shoot)
    after = counts(sandbox_url)
    for name in COUNTERS:
        assert len(names) <= after[name] - before[name] <= len(names) + kills * CONCURRENCY, name
    asked = ledger(sandbox_url)["imagga"]["groupings_requests"] - groupings
    assert 1 <= asked <= 1 + kills


def test_the_analyses_count_against_the_quota_before_anything_is_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 3, seed="quota")
    env = env_for(sandbox_url, migrated_db_url)
    used = ledger(sandbox_url)["imagga"]["monthly_processed"]
    # Enough for the tags of every photo, not for their analyses (4 requests a photo).
    imagga_control(sandbox_url, monthly_limit=used + 3 * 4 - 1)
    try:
        refused = run(shoot, env)
        assert refused.returncode != 0
        assert "12 are needed" in refused.stderr + refused.stdout
        assert ledger(sandbox_url)["imagga"]["monthly_processed"] == used
    finally:
        imagga_control(sandbox_url, monthly_limit=1_000_000)
    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]


def people_of(shoot: Path, env: dict[str, str], *args: str) -> list[dict[str, Any]]:
    done = orchestrator("people", str(shoot), *args, "--json", env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    persons: list[dict[str, Any]] = json.loads(done.stdout)
    return persons


def test_people_are_grouped_once_and_named_once_in_every_file_and_delivery(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 8)
    env = delivery_env(sandbox_url, migrated_db_url)
    asked = ledger(sandbox_url)["imagga"]["groupings_requests"]

    # Killed once the grouping is asked for (its ticket kept): the rerun asks no second time.
    killed = run(shoot, {**env, "ORCH_CRASH_AT": "after_grouping_requested"}, "--deliver")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    done = run(shoot, env, "--deliver")
    assert done.returncode == 0, done.stderr[-3000:]
    assert ledger(sandbox_url)["imagga"]["groupings_requests"] == asked + 1

    persons = people_of(shoot, env)
    assert [p["group"] for p in persons] == [str(n) for n in range(1, len(persons) + 1)]
    assert all(p["name"] is None for p in persons)
    twice = max(persons, key=lambda p: len(p["photos"]))
    assert len(twice["photos"]) >= 2, "the scenes show someone in more than one photo"

    for given in ("Anna", "Anne"):
        named = people_of(shoot, env, twice["group"], "--name", given)
        assert [p["name"] for p in named if p["group"] == twice["group"]] == [given]
    [job] = stored_jobs(migrated_db_url, shoot)
    for photo in job["photos"].values():
        details = photo.phase("tag").details
        theirs = [f for f in details["faces"] if f["person"] == twice["group"]]
        for ref in details["files"]:
            tags = exif(Path(job_dir(job, migrated_db_url, ref["kind"])) / ref["name"])
            subject = as_list(tags.get("XMP-dc:Subject"))
            hierarchy = as_list(tags.get("XMP-lr:HierarchicalSubject"))
            regions = (tags.get("XMP-mwg-rs:RegionInfo") or {}).get("RegionList", [])
            assert "Anna" not in subject and "People|Anna" not in hierarchy
            assert ("Anne" in subject) == bool(theirs)
            assert ("People|Anne" in hierarchy) == bool(theirs)
            assert sum(r.get("Name") == "Anne" for r in regions) == len(theirs)
            assert len(regions) == len(details["faces"])

    again = orchestrator("deliver", str(shoot), "--json", env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    assert json.loads(again.stdout)["delivered"] == len(twice["photos"])
    records = json.loads((shoot / "delivered" / "delivery.json").read_text())
    for record in records:
        assert record["people"] == (["Anne"] if record["photo"] in twice["photos"] else [])
        assert ("Anne" in record["keywords"]) == (record["photo"] in twice["photos"])


def test_people_refuses_unknown_groups_and_jobs_without_people(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 2, seed="refuse")
    env = env_for(sandbox_url, migrated_db_url)
    plain = orchestrator("run", str(shoot), "--profile", "2001", "--tag", "--colors", env=env)
    assert plain.returncode == 0, plain.stderr[-3000:]
    refused = orchestrator("people", str(shoot), env=env)
    assert refused.returncode == 2 and "--people" in refused.stderr
    other = tmp_path / "other"
    make_people_shoot(other, 2, seed="refuse2")
    assert run(other, env).returncode == 0
    unknown = orchestrator("people", str(other), "99", "--name", "Zoe", env=env)
    assert unknown.returncode == 2 and "no person '99'" in unknown.stderr
    empty = orchestrator("people", str(other), "1", "--name", "   ", env=env)
    assert empty.returncode == 2 and "give the person a name" in empty.stderr


def test_a_daemon_waits_for_the_grouping_ticket_in_the_database_not_in_a_loop(
    migrated_db_url: str, tmp_path: Path, daemons: list[Daemon]
) -> None:
    with sandbox_process("--edit-seconds", "0.2") as url:
        shoot = tmp_path / "shoot"
        make_people_shoot(shoot, 4, seed="daemon")
        env = daemon_env(
            f"{url}/v1", migrated_db_url, IMAGGA_API_URL=f"{url}/imagga/v2", **IMAGGA_ENV
        )
        imagga_control(url, ticket_seconds=6.0)
        submitted = orchestrator(
            "submit", str(shoot), "--profile", "2001", "--tag", "--people", "--json", env=env
        )
        assert submitted.returncode == 0, submitted.stderr
        [job_id] = json.loads(submitted.stdout)
        daemon = Daemon(env, tmp_path)
        daemons.append(daemon.start())

        def asleep() -> bool:
            job = daemon.jobs().get(job_id, {})
            polled = ledger(url)["imagga"]["tickets"] > 0
            return polled and job.get("state") == "tagging" and job.get("lease_owner") is None

        # While Imagga groups the faces the job sleeps in the database: no lease, no task.
        wait_for(asleep, timeout=60, interval=0.05, what="the job asleep on its ticket")
        wait_for(
            lambda: daemon.jobs().get(job_id, {}).get("state") == "completed",
            timeout=60,
            what="the job to complete",
        )
        imagga = ledger(url)["imagga"]
        assert imagga["groupings_requests"] == 1
        # Looks with growing pauses over the ticket's 6 s, never a busy loop.
        assert 2 <= imagga["tickets"] <= 15, imagga["tickets"]
        persons = people_of(shoot, env)
        assert persons and all(p["photos"] for p in persons)
