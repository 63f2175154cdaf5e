"""The review's previews made by the pipeline: a job run through the sandbox with `--tag
--review` (real processes, real keywording) waits for review with each photo's thumbnail in the
page's cache, under the version the page asks for, and its capture time read (recorded in the
`tag` phase's details); the page serves those thumbnails as kept. A thumbnail that cannot be
made (here the cache folder cannot be written) is logged and fails neither the photo nor the
job; the page makes it on demand.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from orchestrator.integrations.previews import THUMB_SIDE, cache_folder, thumbnail_path
from orchestrator.store.migrate import upgrade
from orchestrator.workflow.review_previews import jpeg_version
from tests.daemon_support import http
from tests.helpers import cli_env, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import IMAGGA_ENV, make_tag_shoot
from tests.web_support import Ui, in_thread

PHOTOS = 8


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    in_thread(lambda: upgrade(url))
    return url


def _run_to_review(sandbox_url: str, db_url: str, shoot: Path) -> tuple[dict[str, Any], Any]:
    """The shoot run with `--tag --review` until it waits for a person: its job and the run."""
    make_tag_shoot(shoot, jpegs=PHOTOS)
    env = cli_env(
        f"{sandbox_url}/v1", db_url, IMAGGA_API_URL=f"{sandbox_url}/imagga/v2", **IMAGGA_ENV
    )
    done = orchestrator(
        "run", str(shoot), "--profile", "2001", "--tag", "--review", "--json", env=env, timeout=300
    )
    assert done.returncode == 4, done.stderr[-2000:]  # waiting for review, nothing failed
    [job] = stored_jobs(db_url, shoot)
    assert job["state"] == "reviewing" and len(job["photos"]) == PHOTOS
    return job, done


def test_the_pipeline_leaves_each_photo_to_review_its_thumbnail_and_capture_time(
    sandbox_url: str, db_url: str, tmp_path: Path
) -> None:
    job, _ = _run_to_review(sandbox_url, db_url, tmp_path / "shoot")
    folder = cache_folder(db_url)
    kept = {}
    for name, photo in job["photos"].items():
        details = photo.phase("tag").details
        # Read as it was tagged (the sandbox's edits carry no EXIF time: none found).
        assert details["capture"] == {"taken": None}, name
        version = jpeg_version(photo)
        assert version is not None, name
        body = thumbnail_path(folder, job["id"], photo.id, version).read_bytes()
        with Image.open(io.BytesIO(body)) as image:
            assert image.format == "JPEG" and max(image.size) <= THUMB_SIDE, name
        kept[(photo.id, version)] = body

    env = cli_env(f"{sandbox_url}/v1", db_url)
    with Ui(env, tmp_path) as ui:
        for (photo_id, version), body in kept.items():
            status, served = http(
                "GET", f"{ui.url}/jobs/{job['id']}/photos/{photo_id}/thumb?v={version}"
            )
            assert (status, served) == (200, body)


def test_a_thumbnail_that_cannot_be_made_fails_neither_the_photo_nor_the_job(
    sandbox_url: str, db_url: str, tmp_path: Path
) -> None:
    cache_folder(db_url).write_text("a file where the thumbnail cache should be")
    job, done = _run_to_review(sandbox_url, db_url, tmp_path / "shoot")
    assert "thumbnail not made ahead" in done.stderr
    for name, photo in job["photos"].items():
        assert photo.phase("tag").done_at is not None, name
        assert photo.phase("tag").details["capture"] == {"taken": None}, name

    env = cli_env(f"{sandbox_url}/v1", db_url)
    with Ui(env, tmp_path) as ui:
        photo = next(iter(job["photos"].values()))
        status, served = http(
            "GET", f"{ui.url}/jobs/{job['id']}/photos/{photo.id}/thumb?v={jpeg_version(photo)}"
        )
        assert status == 200  # made on demand, served though it cannot be kept
        with Image.open(io.BytesIO(served)) as image:
            assert image.format == "JPEG" and max(image.size) <= THUMB_SIDE
