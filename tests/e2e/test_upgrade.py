"""A photographer who upgrades in the middle of a shoot loses nothing.

Databases are built as the release before the stage reshaping left them (schema 0002: fixed
per-phase columns on `photos`, unversioned options), with a job in every live state and a
partial download on disk: real runs are killed at the right instants and the database is then
taken back to 0002 with its data (the 0003 downgrade, the inverse of the upgrade that
`test_an_0002_database_as_the_old_release_wrote_it_is_carried_over` checks row by row against
hand-written 0002 rows). Then `orchestrator db upgrade` (Postgres) or the first `run` (SQLite)
upgrades it, and every job is driven to its end against the sandbox: nothing uploaded or
downloaded twice beyond what the kills allow, one project, edit and export each, every byte
checked against the ledger.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text

from orchestrator.spec import JobSpec
from orchestrator.store.db import create_engine, is_sqlite
from orchestrator.store.migrate import alembic_config, current_revision, head_revision, upgrade
from tests.helpers import cli_env, leftovers, md5_of, orchestrator, sandbox_process
from tests.resume_support import (
    BIG_JPEG,
    CONCURRENCY,
    make_crash_shoot,
    project_of,
    run_shoot,
    stored_jobs,
)

KILLED = -signal.SIGKILL


@dataclass
class Scenario:
    """One job left in one live state by the old release."""

    name: str
    state: str
    crash_at: str | None = None
    kills: int = 1
    big_only: bool = False
    """Only the shoot's one large photo, so the kill lands inside its download."""
    prepare: Callable[[Path, dict[str, str], str], None] | None = None
    """Runs after the kill: leaves the job as the scenario needs (fail it, cancel it, …)."""


def _fail_on_an_unreadable_photo(shoot: Path, env: dict[str, str], _db: str) -> None:
    photo = shoot / "IMG_0002.jpg"
    (shoot.parent / f"{shoot.name}.saved").write_bytes(photo.read_bytes())
    photo.unlink()
    photo.mkdir()  # as root, only something that is not a file is unreadable
    failed = run_shoot(shoot, env)
    assert failed.returncode == 1, failed.stderr[-2000:]


def _cancel(shoot: Path, env: dict[str, str], db_url: str) -> None:
    [job] = stored_jobs(db_url, shoot)
    cancelled = orchestrator("cancel", job["id"][:8], env=env)
    assert cancelled.returncode == 0, cancelled.stderr


def _pause(shoot: Path, _env: dict[str, str], db_url: str) -> None:
    # What the old release recorded when Imagen was unreachable: the state kept, the reason.
    _sql(
        db_url,
        "UPDATE jobs SET last_error = 'Imagen seems down; run again' WHERE source = "
        f"'{shoot.resolve()}'",
    )


SCENARIOS = [
    Scenario("mid_upload", "uploading", "after_upload:2"),
    Scenario("editing", "editing", "after_checkpoint:5"),
    Scenario("mid_download_edits", "downloading_edits", "mid_download:1", big_only=True),
    Scenario("exporting", "exporting", "after_checkpoint:9"),
    Scenario("mid_download_exports", "downloading_exports", "after_download:5"),
    Scenario("failed", "failed", "after_checkpoint:2", prepare=_fail_on_an_unreadable_photo),
    Scenario("paused", "editing", "after_checkpoint:5", prepare=_pause),
    Scenario("cancelled", "cancelled", "after_upload:1", prepare=_cancel),
    Scenario("completed", "completed", kills=0),
]


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    with sandbox_process("--edit-seconds", "0.2") as url:
        yield url


def _sql(db_url: str, statement: str) -> list[Any]:
    async def run() -> list[Any]:
        engine = create_engine(db_url)
        try:
            async with engine.begin() as conn:
                result = await conn.execute(text(statement))
                return list(result.all()) if result.returns_rows else []
        finally:
            await engine.dispose()

    return asyncio.run(run())


def _jobs_as_0002(db_url: str) -> dict[str, dict[str, Any]]:
    """Each job's state and its photos' old per-phase columns, read with plain SQL."""
    rows = _sql(
        db_url,
        "SELECT j.source, j.state, p.file_name, p.uploaded_at IS NOT NULL, "
        "p.edit_done_at IS NOT NULL, p.export_done_at IS NOT NULL, p.failed_phase "
        "FROM jobs j JOIN photos p ON p.job_id = j.id",
    )
    jobs: dict[str, dict[str, Any]] = {}
    for source, state, name, uploaded, edited, exported, failed in rows:
        job = jobs.setdefault(Path(source).name, {"state": state, "photos": {}})
        job["photos"][name] = (bool(uploaded), bool(edited), bool(exported), failed)
    return jobs


def test_every_live_job_of_an_0002_database_finishes_after_the_upgrade(
    sandbox_url: str, migrated_db_url: str, tmp_path: Path
) -> None:
    db_url = migrated_db_url
    env = cli_env(f"{sandbox_url}/v1", db_url)
    shoots: dict[str, Path] = {}
    files: dict[str, list[str]] = {}
    for scenario in SCENARIOS:
        shoot = shoots[scenario.name] = tmp_path / scenario.name
        files[scenario.name] = make_crash_shoot(shoot, jpeg_only=True)
        if scenario.big_only:
            for name in files[scenario.name]:
                if name != BIG_JPEG:
                    (shoot / name).unlink()
            files[scenario.name] = [BIG_JPEG]
        if scenario.crash_at:
            crashed = run_shoot(shoot, {**env, "ORCH_CRASH_AT": scenario.crash_at})
            assert crashed.returncode == KILLED, (scenario.name, crashed.stderr[-2000:])
        else:
            assert run_shoot(shoot, env).returncode == 0
        if scenario.prepare:
            scenario.prepare(shoot, env, db_url)
        [job] = stored_jobs(db_url, shoot)
        assert job["state"] == scenario.state, scenario.name
    assert list(shoots["mid_download_edits"].rglob("*.partial")), "no partial download on disk"
    recorded = {
        name: {
            photo.file_name: (
                photo.done("upload"),
                photo.done("edit"),
                photo.done("export"),
                next((phase for phase, _ in photo.failures), None),
            )
            for photo in stored_jobs(db_url, shoot)[0]["photos"].values()
        }
        for name, shoot in shoots.items()
    }

    command.downgrade(alembic_config(db_url), "0002")
    assert asyncio.run(current_revision(db_url)) == "0002"
    before = _jobs_as_0002(db_url)
    assert {name: job["state"] for name, job in before.items()} == {
        s.name: s.state for s in SCENARIOS
    }
    assert {name: job["photos"] for name, job in before.items()} == recorded
    assert all(
        up and edit and not export for up, edit, export, _ in before["exporting"]["photos"].values()
    )
    assert (
        "IMG_0002.jpg" in before["failed"]["photos"]
        and before["failed"]["photos"]["IMG_0002.jpg"][3] == "upload"
    )

    if not is_sqlite(db_url):
        refused = run_shoot(shoots["editing"], env)
        assert refused.returncode == 2 and "db upgrade" in refused.stderr
        upgraded = orchestrator("db", "upgrade", env=env)
        assert upgraded.returncode == 0, upgraded.stderr
    # (SQLite: the first run upgrades the file on its own.)
    for scenario in SCENARIOS:
        shoot = shoots[scenario.name]
        if scenario.name == "cancelled":
            continue
        if scenario.name == "failed":
            photo = shoot / "IMG_0002.jpg"
            photo.rmdir()
            photo.write_bytes((shoot.parent / f"{shoot.name}.saved").read_bytes())
            [job] = stored_jobs(db_url, shoot)
            finished = orchestrator("retry", job["id"][:8], "--json", env=env)
        else:
            finished = run_shoot(shoot, env)
        assert finished.returncode == 0, (scenario.name, finished.stderr[-3000:])
    assert asyncio.run(current_revision(db_url)) == head_revision()

    for scenario in SCENARIOS:
        shoot = shoots[scenario.name]
        [job] = stored_jobs(db_url, shoot)
        project = project_of(sandbox_url, job)
        counts = {n: f["uploads_completed"] for n, f in project["files"].items()}
        if scenario.name == "cancelled":
            assert job["state"] == "cancelled"
            assert project["edit_requests"] == 0
            # What it recorded as uploaded survived; the kill may have cut off checkpoints.
            assert {n for n, p in job["photos"].items() if p.done("upload")} <= {
                n for n, c in counts.items() if c
            }
            continue
        assert job["state"] == "completed", scenario.name
        assert (project["edit_requests"], project["export_requests"]) == (1, 1), scenario.name
        assert sorted(counts) == sorted(files[scenario.name])
        assert sum(counts.values()) - len(counts) <= scenario.kills * CONCURRENCY
        for phase, key, folder in (
            ("edit", "edit_outputs", shoot / "edited"),
            ("export", "export_outputs", shoot / "exported"),
        ):
            outputs: dict[str, str] = project[key]
            assert sorted(p.name for p in folder.iterdir()) == sorted(outputs), scenario.name
            for name, md5 in outputs.items():
                assert md5_of(folder / name) == md5, (scenario.name, name)
            recorded = {p.phase(phase).output: p.phase(phase).md5 for p in job["photos"].values()}
            assert recorded == outputs, (scenario.name, phase)
            fetched = project["downloads_completed"][phase]
            assert all(n <= 1 + scenario.kills for n in fetched.values()), (scenario.name, phase)
        assert leftovers(shoot) == [], scenario.name


def test_an_0002_database_as_the_old_release_wrote_it_is_carried_over(db_url: str) -> None:
    asyncio.run(upgrade(db_url, "0002"))
    legacy = {
        "export": True,
        "edit": {"tools": ["crop"], "crop_aspect_ratio": "4X5"},
        "profile_name": "LOVE & LIGHT",
    }
    now = "2026-11-30 10:00:00+00:00"
    _sql(
        db_url,
        "INSERT INTO jobs (id, name, source, edited_dir, exported_dir, image_type, "
        "profile_key, options, state, state_before_failure, project_name, attempt_count, "
        "lease_epoch, cancel_requested, queued_for_daemon, created_at, updated_at) VALUES "
        f"('j1', 'shoot', '/s', '/s/edited', '/s/exported', 'RAW', 1001, "
        f"'{json.dumps(legacy)}', 'failed', 'downloading_exports', 'orchestrator-j1', 0, 0, "
        f"false, false, '{now}', '{now}')",
    )
    _sql(
        db_url,
        "INSERT INTO photos (id, job_id, rel_path, file_name, size, mtime_ns, md5, "
        "uploaded_at, edit_output, edit_size, edit_md5, edit_done_at, export_output, "
        "export_size, export_md5, export_done_at, failed_phase, failed_reason) VALUES "
        f"(1, 'j1', 'a/A.CR2', 'A.CR2', 10, 1, '{'a' * 32}', '{now}', 'A.xmp', 5, '{'b' * 32}', "
        f"'{now}', 'A.jpg', 7, '{'c' * 32}', '{now}', NULL, NULL), "
        f"(2, 'j1', 'B.CR2', 'B.CR2', 11, 1, '{'d' * 32}', '{now}', 'B.xmp', 6, '{'e' * 32}', "
        f"'{now}', NULL, NULL, NULL, NULL, 'export', 'storage said 500'), "
        f"(3, 'j1', 'C.CR2', 'C.CR2', 12, 1, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, "
        "NULL, NULL, 'upload', 'cannot read it')",
    )
    asyncio.run(upgrade(db_url))

    phases = sorted(
        tuple(row)
        for row in _sql(
            db_url,
            "SELECT photo_id, phase, output, size, md5, done_at IS NOT NULL, failed_reason "
            "FROM photo_phases",
        )
    )
    assert phases == [
        (1, "edit", "A.xmp", 5, "b" * 32, True, None),
        (1, "export", "A.jpg", 7, "c" * 32, True, None),
        (1, "upload", None, None, None, True, None),
        (2, "edit", "B.xmp", 6, "e" * 32, True, None),
        (2, "export", None, None, None, False, "storage said 500"),
        (2, "upload", None, None, None, True, None),
        (3, "upload", None, None, None, False, "cannot read it"),
    ]
    [(profile_name, options)] = _sql(db_url, "SELECT profile_name, options FROM jobs")
    assert profile_name == "LOVE & LIGHT"
    spec = JobSpec.from_stored(options if isinstance(options, dict) else json.loads(options))
    assert spec.export and spec.edit.tools == {"crop"}
    assert spec.edit.crop_aspect_ratio == "4X5"
