"""A shoot with card subfolders (whose outputs mirror them) goes through keywording and
delivery: the stages find each photo's outputs where the layout put them."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import cli_env, ledger, orchestrator, sandbox_process
from tests.resume_support import stored_jobs
from tests.tagging_support import IMAGGA_ENV, make_tag_shoot, needs_exiftool, xmp_list, xmp_of

pytestmark = needs_exiftool

IMGIX_ENV = {
    "IMGIX_API_KEY": "imgix-test-key-0123456789",
    "IMGIX_SOURCE_ID": "src1",
    "IMGIX_DOMAIN": "studio.imgix.net",
}


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def test_a_shoot_in_card_folders_is_keyworded_and_delivered_from_its_mirrored_outputs(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_tag_shoot(shoot / "Card 1", jpegs=2, seed=1)
    for name in make_tag_shoot(shoot / "Card 2", jpegs=1, seed=2):
        (shoot / "Card 2" / name).rename(shoot / "Card 2" / f"B_{name}")
    env = cli_env(
        f"{sandbox_url}/v1",
        migrated_db_url,
        IMAGGA_API_URL=f"{sandbox_url}/imagga/v2",
        IMGIX_API_URL=f"{sandbox_url}/imgix/api/v1",
        **IMAGGA_ENV,
        **IMGIX_ENV,
    )
    done = orchestrator(
        "run",
        str(shoot),
        "--profile",
        "2001",
        "--export",
        "--tag",
        "--deliver",
        "--json",
        env=env,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [job] = stored_jobs(migrated_db_url, shoot)
    assert job["state"] == "completed"
    assets = ledger(sandbox_url)["imgix"]["assets"]
    for rel_path, photo in job["photos"].items():
        exported = shoot / "exported" / Path(rel_path).parent / photo.phase("export").output
        assert exported.is_file(), exported
        keywords = photo.phase("tag").details["keywords"]
        assert xmp_list(xmp_of(exported), "dc:subject")[1] == keywords
        origin = photo.phase("deliver").output
        [asset] = [a for key, a in assets.items() if key.endswith(origin)]
        assert asset["md5"] == hashlib.md5(exported.read_bytes()).hexdigest()
