"""The studio's face recognition index (`ORCH_PEOPLE_INDEX`) end to end: real `orchestrator`
processes against the sandbox on a real port, two shoots of the same synthetic people, the
files read back with exiftool, what was paid read from the sandbox's ledger.

Who is who is judged independently of the product: the sandbox's vision reads the faces'
signature hues again from the same small copy Imagga got, and a face of shoot two is the person
named in shoot one when its hue is within the groupings' 30 degrees of theirs.
"""

from __future__ import annotations

import hashlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.integrations.downscale import downscale
from orchestrator.sandbox import vision
from orchestrator.sandbox.imagga_answers import GROUPING_HUE_DEGREES
from tests.e2e.test_analyses import as_list, exif, make_people_shoot, people_of, run
from tests.e2e.test_tagging import env_for, job_dir
from tests.helpers import ledger, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import needs_exiftool

pytestmark = needs_exiftool

RECOGNITION = ("recognition_requests", "recognition_trainings", "recognition_lookups")


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def recognition(url: str) -> dict[str, int]:
    imagga = ledger(url)["imagga"]
    return {name: int(imagga[name]) for name in RECOGNITION}


Seen = tuple[list[tuple[dict[str, Any], float]], list[Path]]


def faces_seen(db_url: str, shoot: Path) -> dict[str, Seen]:
    """Each photo's stored faces with the hue the sandbox's vision reads for each (from the
    same small copy Imagga got), and the photo's files."""
    [job] = stored_jobs(db_url, shoot)
    assert job["state"] == "completed", job["last_error"]
    found: dict[str, Seen] = {}
    for photo in job["photos"].values():
        details = photo.phase("tag").details
        paths = [Path(job_dir(job, db_url, ref["kind"])) / ref["name"] for ref in details["files"]]
        small = downscale(paths[0])
        seen = vision.read_bytes(small, hashlib.md5(small).hexdigest())
        assert len(seen.faces) == len(details["faces"])
        hues = [read.hue for read in seen.faces]
        found[photo.file_name] = (list(zip(details["faces"], hues, strict=True)), paths)
    return found


def close(hue: float, hues: list[float]) -> bool:
    return any(min(abs(hue - h), 360 - abs(hue - h)) < GROUPING_HUE_DEGREES for h in hues)


def test_a_person_named_in_one_shoot_is_named_in_the_next_without_a_word(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    index = f"studio-{uuid.uuid4().hex[:12]}"
    env = {**env_for(sandbox_url, migrated_db_url), "ORCH_PEOPLE_INDEX": index}
    first, second = tmp_path / "first", tmp_path / "second"
    make_people_shoot(first, 6, seed="index-one")
    make_people_shoot(second, 6, seed="index-two")
    before = recognition(sandbox_url)

    done = run(first, env)
    assert done.returncode == 0, done.stderr[-3000:]
    persons = people_of(first, env)
    anna = max(persons, key=lambda p: len(p["photos"]))
    # The index does not exist yet: each person of shoot one is looked up once (and not
    # billed: Imagga answers 404), nobody is named.
    assert all(p["name"] is None for p in persons)
    looked = recognition(sandbox_url)
    assert looked["recognition_requests"] - before["recognition_requests"] == len(persons)
    assert looked["recognition_lookups"] == before["recognition_lookups"]
    assert looked["recognition_trainings"] == before["recognition_trainings"]

    # Killed between the training request and its record: the naming again repeats only it.
    name = ("people", str(first), anna["group"], "--name", "Anna", "--json")
    killed = orchestrator(*name, env={**env, "ORCH_CRASH_AT": "after_index_training_requested"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert recognition(sandbox_url)["recognition_trainings"] == looked["recognition_trainings"] + 1
    for _ in range(2):  # the second naming finds the training kept: nothing paid again
        again = orchestrator(*name, env=env)
        assert again.returncode == 0, again.stderr[-3000:]
    taught = recognition(sandbox_url)
    assert taught["recognition_trainings"] == looked["recognition_trainings"] + 2
    trained = ledger(sandbox_url)["imagga"]["recognition_indexes"][index]["trained"]
    assert list(trained) == ["Anna"]

    anna_hues = [
        hue
        for faces, _ in faces_seen(migrated_db_url, first).values()
        for face, hue in faces
        if face["person"] == anna["group"]
    ]
    assert anna_hues and all(close(hue, anna_hues) for hue in anna_hues)

    done = run(second, env)
    assert done.returncode == 0, done.stderr[-3000:]
    persons_two = people_of(second, env)
    after = recognition(sandbox_url)
    assert after["recognition_lookups"] - taught["recognition_lookups"] == len(persons_two)
    assert after["recognition_requests"] - taught["recognition_requests"] == len(persons_two)
    assert after["recognition_trainings"] == taught["recognition_trainings"]
    named = [p for p in persons_two if p["name"] == "Anna"]
    assert len(named) == 1, persons_two
    assert all(p["name"] is None for p in persons_two if p["name"] != "Anna")

    seen = faces_seen(migrated_db_url, second)
    annas = 0
    for photo, (faces, paths) in seen.items():
        is_anna = [close(hue, anna_hues) for _, hue in faces]
        assert [face["name"] == "Anna" for face, _ in faces] == is_anna, photo
        annas += sum(is_anna)
        assert len(paths) == 2
        for path in paths:
            tags = exif(path)
            regions = (tags.get("XMP-mwg-rs:RegionInfo") or {}).get("RegionList", [])
            assert ("People|Anna" in as_list(tags.get("XMP-lr:HierarchicalSubject"))) == any(
                is_anna
            )
            assert ("Anna" in as_list(tags.get("XMP-dc:Subject"))) == any(is_anna)
            assert sum(r.get("Name") == "Anna" for r in regions) == sum(is_anna)
    assert annas == named[0]["faces"] >= 1

    history = orchestrator("history", str(second), "--json", env=env)
    assert history.returncode == 0, history.stderr[-3000:]
    assert f"recognised as Anna from the studio's index {index!r}" in history.stdout

    # Still the photographer's to rename.
    renamed = people_of(second, env, named[0]["group"], "--name", "Anne")
    assert [p["name"] for p in renamed if p["group"] == named[0]["group"]] == ["Anne"]


def test_without_an_index_nothing_is_taught_or_looked_up(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    env = env_for(sandbox_url, migrated_db_url)
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 4, seed="no-index")
    before = recognition(sandbox_url)
    done = run(shoot, env)
    assert done.returncode == 0, done.stderr[-3000:]
    persons = people_of(shoot, env)
    assert persons
    people_of(shoot, env, persons[0]["group"], "--name", "Zoe")
    assert recognition(sandbox_url) == before


def test_a_bad_index_id_is_refused_before_anything_is_sent(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    env = {**env_for(sandbox_url, migrated_db_url), "ORCH_PEOPLE_INDEX": "studio/../x"}
    shoot = tmp_path / "shoot"
    make_people_shoot(shoot, 1, seed="bad-index")
    before = ledger(sandbox_url)["imagga"]
    refused = run(shoot, env)
    assert refused.returncode == 2
    assert "people_index" in refused.stderr or "ORCH_PEOPLE_INDEX" in refused.stderr
    assert ledger(sandbox_url)["imagga"]["tag_requests"] == before["tag_requests"]
