"""A review on the page reaches the files: keywords a person removed or added there are written
into the photo's files when the review ends, before anything is delivered."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.service import review as review_service
from orchestrator.store.queries import Store
from tests.helpers import cli_env, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import (
    IMAGGA_ENV,
    iptc_keywords,
    make_tag_shoot,
    needs_exiftool,
    xmp_list,
    xmp_of,
)

pytestmark = needs_exiftool


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def _run(shoot: Path, env: dict[str, str]) -> tuple[int, str]:
    done = orchestrator(
        "run", str(shoot), "--profile", "2001", "--tag", "--review", "--json", env=env, timeout=180
    )
    return done.returncode, done.stderr


def test_keywords_changed_in_review_are_in_the_files_when_the_review_ends(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot, jpegs=2)
    env = cli_env(
        f"{sandbox_url}/v1",
        migrated_db_url,
        IMAGGA_API_URL=f"{sandbox_url}/imagga/v2",
        **IMAGGA_ENV,
    )
    code, stderr = _run(shoot, env)
    assert code == 4, stderr[-2000:]  # waiting for a person: neither done nor failed
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "reviewing"
    name, photo = sorted(job["photos"].items())[0]
    details = photo.phase("tag").details
    dropped = details["keywords"][0]
    extra = next(s["tag"] for s in details["suggestions"] if s["tag"] not in details["keywords"])
    output = photo.phase("edit").output

    async def review() -> None:
        store = Store.open(migrated_db_url)
        try:
            await review_service.edit_keywords(
                store, job["id"], name, add=[extra], remove=[dropped]
            )
            await review_service.approve(store, job["id"])
        finally:
            await store.close()

    asyncio.run(review())
    code, stderr = _run(shoot, env)
    assert code == 0, stderr[-2000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "completed"
    final = job["photos"][name].phase("tag").details
    assert extra in final["keywords"] and dropped not in final["keywords"]
    assert "written_keywords" not in final
    file = shoot / "edited" / output
    _kind, subject = xmp_list(xmp_of(file), "dc:subject")
    _mark, iptc = iptc_keywords(file)
    for words in (subject, iptc):
        assert extra in words and dropped not in words, words
    assert final["source"] == "reviewed"
