"""Migration 0008 groups the jobs of an existing database into shoots, one per folder, with
jobs in every state (live ones included) and nothing else of theirs touched; on SQLite and
Postgres."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import sqlalchemy as sa
from alembic import command

from orchestrator.service import shoots as shoot_views
from orchestrator.states import JobState
from orchestrator.store.db import create_engine, is_sqlite
from orchestrator.store.migrate import alembic_config, upgrade
from orchestrator.store.queries import Store

NOW = "2026-11-30 10:00:00+00:00"
LATER = "2026-11-30 11:00:00+00:00"


async def _sql(db_url: str, statement: str) -> list[tuple[object, ...]]:
    engine = create_engine(db_url)
    try:
        async with engine.begin() as conn:
            result = await conn.execute(sa.text(statement))
            return [tuple(row) for row in result.all()] if result.returns_rows else []
    finally:
        await engine.dispose()


async def _insert_job(
    db_url: str, job_id: str, source: str, image_type: str, state: str, created: str
) -> None:
    spec = json.dumps({"version": 1, "export": True})
    await _sql(
        db_url,
        "INSERT INTO jobs (id, name, source, edited_dir, exported_dir, image_type, profile_key, "
        "options, state, project_name, attempt_count, lease_epoch, cancel_requested, "
        "queued_for_daemon, created_at, updated_at, wake_at) VALUES "
        f"('{job_id}', '{Path(source).name} ({image_type})', '{source}', '{source}/edited', "
        f"'{source}/exported', '{image_type}', 1001, '{spec}', '{state}', 'p-{job_id}', 0, 3, "
        f"false, true, '{created}', '{created}', '{created}')",
    )
    await _sql(
        db_url,
        "INSERT INTO photos (job_id, rel_path, file_name, size, mtime_ns) VALUES "
        f"('{job_id}', 'Card 1/{job_id}.JPG', '{job_id}.JPG', 10, 1), "
        f"('{job_id}', 'Card 2/{job_id}b.JPG', '{job_id}b.JPG', 11, 1)",
    )
    await _sql(
        db_url,
        "INSERT INTO photo_phases (photo_id, phase, job_id, done_at) SELECT id, 'upload', "
        f"job_id, '{created}' FROM photos WHERE job_id = '{job_id}'",
    )


async def test_every_job_of_a_0007_database_joins_the_shoot_of_its_folder(db_url: str) -> None:
    await upgrade(db_url, "0007")
    states = [state.value for state in JobState]
    # One wedding of RAW and JPEG, one folder edited twice (--again), and a folder per state.
    await _insert_job(db_url, "wraw", "/shoots/smith-wedding", "RAW", "editing", NOW)
    await _insert_job(db_url, "wjpg", "/shoots/smith-wedding", "JPG", "uploading", LATER)
    await _insert_job(db_url, "again1", "/shoots/jones", "JPG", "completed", NOW)
    await _insert_job(db_url, "again2", "/shoots/jones", "JPG", "reviewing", LATER)
    for n, state in enumerate(states):
        await _insert_job(db_url, f"s{n}", f"/shoots/state-{state}", "JPG", state, NOW)
    photos_before = await _sql(db_url, "SELECT id, job_id, rel_path FROM photos ORDER BY id")
    phases_before = await _sql(db_url, "SELECT photo_id, phase FROM photo_phases ORDER BY 1")

    await upgrade(db_url)

    rows = await _sql(
        db_url,
        "SELECT j.id, j.state, s.id, s.name, s.source, s.keywords, s.created_at "
        "FROM jobs j JOIN shoots s ON s.id = j.shoot_id ORDER BY j.id",
    )
    by_job = {row[0]: row for row in rows}
    assert len(by_job) == 4 + len(states)
    assert by_job["wraw"][2] == by_job["wjpg"][2] != by_job["again1"][2]
    assert by_job["again1"][2] == by_job["again2"][2]
    assert by_job["wraw"][3:5] == ("smith-wedding", "/shoots/smith-wedding")
    assert {row[2] for row in rows} == {by_job[j][2] for j in ("wraw", "again1")} | {
        by_job[f"s{n}"][2] for n in range(len(states))
    }
    assert all(len(str(row[2])) == 32 for row in rows)
    assert all(
        json.loads(row[5]) == [] if isinstance(row[5], str) else row[5] == [] for row in rows
    )
    assert {by_job[f"s{n}"][1] for n in range(len(states))} == set(states)
    assert len(await _sql(db_url, "SELECT id FROM shoots")) == 2 + len(states)
    # Nothing of the jobs themselves was lost by the table's rebuild (SQLite) or the ALTERs.
    assert await _sql(db_url, "SELECT id, job_id, rel_path FROM photos ORDER BY id") == (
        photos_before
    )
    assert await _sql(db_url, "SELECT photo_id, phase FROM photo_phases ORDER BY 1") == (
        phases_before
    )
    [(epoch, daemon)] = await _sql(
        db_url, "SELECT lease_epoch, queued_for_daemon FROM jobs WHERE id = 'wraw'"
    )
    assert (epoch, bool(daemon)) == (3, True)
    if is_sqlite(db_url):
        indexes = dict(
            await _sql(db_url, "SELECT name, sql FROM sqlite_master WHERE tbl_name = 'jobs'")
        )
        assert "WHERE queued_for_daemon = 1" in str(indexes["ix_jobs_live_daemon_wake_at"])
        assert "WHERE state NOT IN" in str(indexes["ix_jobs_live_created_at"])
        assert "WHERE poll_at IS NOT NULL" in str(indexes["ix_jobs_poll_at"])

    # The views read the carried-over shoots: the wedding is one shoot of two jobs, live.
    store = Store.open(db_url)
    try:
        [wedding] = await shoot_views.status(store, ref="smith-wedding")
        assert [job["id"] for job in wedding["jobs"]] == ["wraw", "wjpg"]
        assert (wedding["state"], wedding["photos"]) == ("uploading", 4)
        listed = await shoot_views.status(store, everything=True)
        assert len(listed) == 2 + len(states)
    finally:
        await store.close()

    await asyncio.to_thread(command.downgrade, alembic_config(db_url), "0007")
    assert len(await _sql(db_url, "SELECT id FROM jobs")) == 4 + len(states)
    assert await _sql(db_url, "SELECT id, job_id, rel_path FROM photos ORDER BY id") == (
        photos_before
    )
