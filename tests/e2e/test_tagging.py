"""Keywords end to end: real `orchestrator` processes against the sandbox on a real port.

Every exported JPEG, edited JPEG and sidecar is read back with an independent reader (Pillow
and the standard XML parser): keywords that follow the rule from the ledger's own tags, image
data and `crs:` settings identical to what Imagen made; each image tagged once in the ledger,
also across SIGKILLs; a spent quota pauses and resumes; reviews, bad credentials, a plan without
the feature and junk answers.
"""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.sandbox import pictures
from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.outputs import xmp_packet
from orchestrator.sandbox.state import EditInput
from orchestrator.spec import TagSpec
from tests.helpers import cli_env, ledger, md5_of, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import (
    IMAGGA_ENV,
    UTF8_MARK,
    develop_settings,
    image_data,
    iptc_keywords,
    jpeg_segments,
    make_tag_shoot,
    needs_exiftool,
    xmp_list,
    xmp_of,
)

pytestmark = needs_exiftool

CONCURRENCY = 4
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def env_for(url: str, db_url: str, **extra: str) -> dict[str, str]:
    return cli_env(
        f"{url}/v1", db_url, IMAGGA_API_URL=f"{url}/imagga/v2", **{**IMAGGA_ENV, **extra}
    )


def imagga_control(url: str, **body: Any) -> None:
    request = urllib.request.Request(
        f"{url}/_sandbox/imagga", data=json.dumps(body).encode(), method="PUT"
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200


def run_args(shoot: Path, *extra: str, profiles: tuple[str, ...] = ("2001",)) -> list[str]:
    args = ["run", str(shoot), "--tag", "--concurrency", str(CONCURRENCY), "--json"]
    for profile in profiles:
        args += ["--profile", profile]
    return [*args, *extra]


def run(
    shoot: Path, env: dict[str, str], *extra: str, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return orchestrator(*run_args(shoot, *extra, **kw), env=env, timeout=180)


def tagged_counts(url: str) -> Counter[str]:
    return Counter(entry["md5"] for entry in ledger(url)["imagga"]["tagged"])


def check_job_files(url: str, db_url: str, shoot: Path, *, export: bool) -> None:
    """Every photo of every job of the shoot tagged, and each of its files carrying exactly
    its keywords where the tools read them, with its image and develop settings intact."""
    answers = {e["md5"]: e["tags"] for e in ledger(url)["imagga"]["tagged"]}
    for job in stored_jobs(db_url, shoot):
        assert job["state"] == "completed", (job["name"], job["last_error"])
        raw = "RAW" in job["name"]
        for photo in job["photos"].values():
            record = photo.phase("tag")
            assert record is not None and record.done_at is not None
            details = record.details
            # The keywords follow the rule from what Imagga answered for the image it got.
            tags = answers[details["image_md5"]]
            assert details["suggestions"] == tags
            chosen = [t["tag"] for t in tags if t["confidence"] >= 60]
            expected = chosen if len(chosen) >= 3 else [t["tag"] for t in tags[:3]]
            assert details["keywords"] == expected[: TagSpec().max_keywords]
            assert details["source"] == "auto"
            files = [
                Path(job_dir(job, db_url, ref["kind"])) / ref["name"] for ref in details["files"]
            ]
            assert {p.suffix.lower() for p in files} == ({".jpg", ".xmp"} if raw else {".jpg"})
            assert len(files) == (2 if export else 1)
            assert details["content_md5"] == md5_of(files[0])
            for path in files:
                check_file(path, photo.file_name, details["keywords"], shoot, raw=raw)


def job_dir(job: dict[str, Any], db_url: str, kind: str) -> str:
    import asyncio

    from orchestrator.store.queries import Store

    async def read() -> str:
        store = Store.open(db_url)
        try:
            found = await store.get_job(job["id"])
            return found.exported_dir if kind == "export" else found.edited_dir
        finally:
            await store.close()

    return asyncio.run(read())


def check_file(path: Path, photo: str, keywords: list[str], shoot: Path, *, raw: bool) -> None:
    root = xmp_of(path)
    kind, subject = xmp_list(root, "dc:subject")
    assert kind == "Bag" and sorted(subject) == sorted(keywords), path
    if path.suffix == ".xmp":
        # Imagen's develop settings exactly as the sandbox made them for this photo.
        source = shoot / photo
        made = xmp_packet(
            EditInput(name=photo, path=source, md5_hex=md5_of(source)),
            EditSettings(profile_key=1001, tools=()),
        )
        assert develop_settings(root) == develop_settings(xmp_of_bytes(made))
        return
    charset, iptc = iptc_keywords(path)
    assert charset == UTF8_MARK and sorted(iptc) == sorted(keywords), path
    if path.parent.name in ("edited", "JPG") and not raw and "edited" in path.parts:
        # The edit is the sandbox's edited picture of the photo plus Imagen's XMP.
        source = shoot / photo
        md5_hex = md5_of(source)
        made = pictures.edited(
            md5_hex,
            pictures.look_of(md5_hex, 2001),
            data=source.read_bytes(),
            path=None,
            decodable=True,
            draw=False,
        )
        assert made is not None
        segments, scan = jpeg_segments(made)
        picture = [(m, p) for m, p in segments if not (0xE0 <= m <= 0xEF or m == 0xFE)]
        assert image_data(path) == (picture, scan)


def xmp_of_bytes(data: bytes) -> Any:
    import xml.etree.ElementTree as ET

    return ET.fromstring(data)


def test_a_jpeg_shoot_without_export_gets_keywords_in_its_edits(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_tag_shoot(shoot, jpegs=4)
    env = env_for(sandbox_url, migrated_db_url)

    done = run(shoot, env)

    assert done.returncode == 0, done.stderr[-3000:]
    check_job_files(sandbox_url, migrated_db_url, shoot, export=False)
    counts = tagged_counts(sandbox_url)
    assert len(counts) == len(names) and set(counts.values()) == {1}
    [job] = stored_jobs(migrated_db_url, shoot)
    listed = orchestrator("keywords", job["id"], "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    views = json.loads(listed.stdout)
    assert sorted(v["photo"] for v in views) == names
    assert all(set(v) >= {"photo", "keywords", "suggestions", "source"} for v in views)
    # Running again costs nothing: the job is done, and nothing is sent.
    again = run(shoot, env)
    assert again.returncode == 0 and tagged_counts(sandbox_url) == counts


def test_raw_with_export_and_jpeg_with_export_tag_every_file(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=3, raws=2)
    env = env_for(sandbox_url, migrated_db_url)

    done = run(shoot, env, "--export", "--moderate", profiles=("1001", "2001"))

    assert done.returncode == 0, done.stderr[-3000:]
    check_job_files(sandbox_url, migrated_db_url, shoot, export=True)
    # The sandbox's exports of RAW photos all show the same picture: one request for them.
    assert set(tagged_counts(sandbox_url).values()) == {1}
    for job in stored_jobs(migrated_db_url, shoot):
        for photo in job["photos"].values():
            moderation = photo.phase("tag").details["moderation"]
            assert set(moderation) == {"flagged", "score"}


def test_raw_without_export_is_refused_before_anything_is_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=1, raws=1)

    refused = run(shoot, env_for(sandbox_url, migrated_db_url), profiles=("1001", "2001"))

    assert refused.returncode == 2
    assert "add --export" in refused.stderr
    assert stored_jobs(migrated_db_url, shoot) == []
    assert ledger(sandbox_url)["projects"] == []


KILLS = [
    # (crash point, the job's state when the process died). JPEG jobs without export: the
    # sandbox's exports all show one picture, its edits keep each photo's own.
    ("after_checkpoint:8", "tagging"),  # entered the stage
    ("after_imagga_answer:1", "tagging"),  # first answer kept, nothing written
    ("after_keywords_written:1", "tagging"),  # files written, not checkpointed
    ("after_keywords_written:4", "tagging"),  # mid-stage
    ("after_checkpoint:9", "completed"),  # left the stage
]


@pytest.mark.parametrize(("point", "state_at_kill"), KILLS, ids=[p for p, _ in KILLS])
def test_a_kill_at_each_checkpoint_tags_each_image_once(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path, point: str, state_at_kill: str
) -> None:
    shoot = tmp_path / "shoot"
    names = make_tag_shoot(shoot, jpegs=6)
    env = env_for(sandbox_url, migrated_db_url)

    killed = run(shoot, {**env, "ORCH_CRASH_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == state_at_kill

    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_job_files(sandbox_url, migrated_db_url, shoot, export=False)
    counts = tagged_counts(sandbox_url)
    assert len(counts) == len(names)
    assert sum(counts.values()) - len(names) <= CONCURRENCY


def test_kills_at_random_instants_while_tagging(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_tag_shoot(shoot, jpegs=10)
    env = env_for(sandbox_url, migrated_db_url)
    imagga_control(sandbox_url, delay_seconds=0.1)
    rng = random.Random(11)
    kills = 0
    for _ in range(3):
        process = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *run_args(shoot)],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        before = sum(tagged_counts(sandbox_url).values())
        deadline = time.monotonic() + 120
        # Wait for tagging to be under way, then kill at a random instant of it.
        while process.poll() is None and time.monotonic() < deadline:
            if sum(tagged_counts(sandbox_url).values()) > before:
                time.sleep(rng.uniform(0.0, 0.4))
                break
            time.sleep(0.02)
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            kills += 1
        process.wait(timeout=30)

    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_job_files(sandbox_url, migrated_db_url, shoot, export=False)
    counts = tagged_counts(sandbox_url)
    assert len(counts) == len(names)
    assert sum(counts.values()) - len(names) <= kills * CONCURRENCY


def test_a_quota_spent_midway_pauses_and_the_job_finishes_after_the_reset(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    names = make_tag_shoot(shoot, jpegs=6)
    env = env_for(sandbox_url, migrated_db_url, ORCH_IMAGGA_CONCURRENCY="1")
    # Enough at the start for every photo, then someone else spends the month's rest.
    imagga_control(sandbox_url, monthly_limit=6, delay_seconds=0.2)
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *run_args(shoot)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not ledger(sandbox_url)["imagga"]["tagged"] and time.monotonic() < deadline:
        time.sleep(0.02)
    imagga_control(sandbox_url, monthly_processed=6)
    out, err = process.communicate(timeout=120)

    assert process.returncode == 1, err[-3000:]
    [outcome] = json.loads(out)
    assert "monthly quota has 0 of 6 requests left" in outcome["paused"]
    assert "resets" in outcome["paused"]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "tagging"
    tagged_before = len(tagged_counts(sandbox_url))
    assert 1 <= tagged_before < len(names)

    # Before the reset, running again is refused before anything is sent, saying how many
    # are left; the job waits where it is.
    early = run(shoot, env)
    assert early.returncode == 2 and "0 of 6 requests left" in early.stderr
    assert len(tagged_counts(sandbox_url)) == tagged_before
    assert stored_jobs(migrated_db_url, shoot)[0]["state"] == "tagging"

    imagga_control(sandbox_url, monthly_processed=0, delay_seconds=0)
    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    check_job_files(sandbox_url, migrated_db_url, shoot, export=False)
    assert set(tagged_counts(sandbox_url).values()) == {1}


def test_a_quota_too_small_is_refused_before_the_edit_unless_told_to_tag_anyway(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=5)
    env = env_for(sandbox_url, migrated_db_url)
    imagga_control(sandbox_url, monthly_limit=3)
    projects = len(ledger(sandbox_url)["projects"])

    refused = run(shoot, env)
    assert refused.returncode == 2, refused.stderr[-3000:]
    message = " ".join(refused.stderr.split())
    assert "3 of 3 requests left and 5 are needed" in message
    assert "--tag-anyway" in message
    assert ledger(sandbox_url)["imagga"]["tagged"] == []
    assert len(ledger(sandbox_url)["projects"]) == projects  # no edit paid for

    anyway = run(shoot, env, "--tag-anyway")
    assert anyway.returncode == 1
    [outcome] = json.loads(anyway.stdout)
    assert "tagged 3 photos; 2 wait for Imagga's quota" in outcome["paused"]
    assert len(tagged_counts(sandbox_url)) == 3


def test_review_adds_only_suggested_words_rewrites_the_files_and_survives_a_resume(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=4)
    env = env_for(sandbox_url, migrated_db_url)
    # One photo at a time: each one's tag checkpoint is committed before the next is tagged,
    # so the kill at the third finds two tagged (with more at once, their commits may not be
    # in yet).
    crash = {**env, "ORCH_CRASH_AT": "after_keywords_written:3"}
    killed = run(shoot, crash, "--concurrency", "1")
    assert killed.returncode == -signal.SIGKILL
    [job] = stored_jobs(migrated_db_url, shoot)
    photo = next(p for p in job["photos"].values() if p.done("tag"))
    details = photo.phase("tag").details
    unused = next(s["tag"] for s in details["suggestions"] if s["tag"] not in details["keywords"])
    dropped = details["keywords"][0]
    requests = ledger(sandbox_url)["imagga"]["tag_requests"]

    refused = orchestrator("keywords", job["id"], photo.file_name, "--add", "zeppelin", env=env)
    assert refused.returncode == 2
    assert "'zeppelin' is not among the suggestions" in refused.stderr and unused in refused.stderr
    reviewed = orchestrator(
        "keywords", job["id"], photo.file_name, "--add", unused, "--remove", dropped, "--json",
        env=env,
    )  # fmt: skip
    assert reviewed.returncode == 0, reviewed.stderr
    [view] = json.loads(reviewed.stdout)
    assert view["source"] == "reviewed" and view["keyword_sources"][unused] == "reviewed"
    assert unused in view["keywords"] and dropped not in view["keywords"]

    done = run(shoot, env)  # the resume keeps the review
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    after = job["photos"][photo.rel_path].phase("tag").details
    assert after["source"] == "reviewed" and after["keywords"] == view["keywords"]
    edited = Path(job_dir(job, migrated_db_url, "edit")) / after["files"][0]["name"]
    assert sorted(xmp_list(xmp_of(edited), "dc:subject")[1]) == sorted(view["keywords"])
    assert sorted(iptc_keywords(edited)[1]) == sorted(view["keywords"])

    # Choosing again at another threshold is free and leaves the reviewed photo alone.
    before_reselect = ledger(sandbox_url)["imagga"]["tag_requests"]
    again = orchestrator(
        "keywords", job["id"], "--reselect", "--threshold", "90", "--json", env=env
    )
    assert again.returncode == 0, again.stderr
    assert ledger(sandbox_url)["imagga"]["tag_requests"] == before_reselect >= requests
    for changed in json.loads(again.stdout):
        assert changed["photo"] != photo.file_name
        high = [s["tag"] for s in changed["suggestions"] if s["confidence"] >= 90]
        assert changed["keywords"] == (high if len(high) >= 3 else
                                       [s["tag"] for s in changed["suggestions"][:3]])  # fmt: skip


def test_bad_or_missing_credentials_stop_with_exit_2_and_never_show_the_secret(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=2)
    imagga_control(sandbox_url, credentials=["imagga-key-123", "the-right-secret"])

    bad = run(shoot, env_for(sandbox_url, migrated_db_url))
    assert bad.returncode == 2, bad.stderr[-3000:]
    assert "IMAGGA_API_KEY" in bad.stderr and "401" in bad.stderr
    assert "imagga-secret-456" not in bad.stdout + bad.stderr
    assert "imagga-key-123" not in bad.stdout + bad.stderr

    env = env_for(sandbox_url, migrated_db_url)
    del env["IMAGGA_API_SECRET"]
    other = tmp_path / "other"
    make_tag_shoot(other, jpegs=1, seed=5)
    missing = run(other, env)
    assert missing.returncode == 2 and "IMAGGA_API_SECRET" in missing.stderr
    assert stored_jobs(migrated_db_url, other) == []


def test_a_feature_outside_the_plan_pauses_and_junk_answers_fail_the_job(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=2)
    env = env_for(sandbox_url, migrated_db_url)
    imagga_control(sandbox_url, forbidden=["categories/personal_photos"])

    paused = run(shoot, env, "--categorize", "personal_photos")
    assert paused.returncode == 1
    [outcome] = json.loads(paused.stdout)
    assert "categories/personal_photos (HTTP 403)" in outcome["paused"]
    assert "plan does not allow it" in outcome["paused"]

    imagga_control(sandbox_url, forbidden=[], junk="html")
    failed = run(shoot, env, "--categorize", "personal_photos")
    assert failed.returncode == 1
    [outcome] = json.loads(failed.stdout)
    assert outcome["state"] == "failed" and "not JSON" in outcome["last_error"]

    imagga_control(sandbox_url, junk=None)
    retried = orchestrator("retry", outcome["id"], "--json", env=env, timeout=180)
    assert retried.returncode == 0, retried.stderr[-3000:]
    for job in stored_jobs(migrated_db_url, shoot):
        for photo in job["photos"].values():
            categories = photo.phase("tag").details["categories"]
            assert categories and categories[0]["confidence"] >= categories[-1]["confidence"]
