"""Issue 15 item 14: Imagen projects are named after the shoot plus a short id, the same name
every time for one job (so a crash cannot make a twin); old jobs keep their stored names."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrator.workflow.planning import project_name
from tests.engine_harness import Harness, harness
from tests.resume_support import make_crash_shoot


@pytest.fixture
async def h(migrated_db_url: str) -> AsyncIterator[Harness]:
    async with harness(migrated_db_url) as running:
        yield running


async def test_the_project_at_imagen_is_named_after_the_shoot(h: Harness, tmp_path: Path) -> None:
    shoot = tmp_path / "Smith wedding"
    make_crash_shoot(shoot, seed=8, jpeg_only=True)
    [job_id] = await h.plan(shoot)
    job = await h.store.get_job(job_id)
    assert job.project_name == f"Smith wedding {job_id[:8]}"
    assert job.project_name == project_name("Smith wedding", job_id)  # the same every time
    assert (await h.drive(job_id)).job.state == "completed"
    project = h.ledger_project(job_id)
    assert project is not None and project["name"] == f"Smith wedding {job_id[:8]}"


def test_names_are_readable_and_bounded() -> None:
    assert project_name("Card\t1\n  Ceremony", "0123456789ab") == "Card 1 Ceremony 01234567"
    assert len(project_name("x" * 300, "0123456789ab")) <= 100
    assert project_name("\x1b", "0123456789ab") == "shoot 01234567"
