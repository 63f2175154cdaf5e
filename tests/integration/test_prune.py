"""`prune`: finished jobs past the age go with everything of theirs, nothing live or recent is
touched, spent callbacks go, and the space comes back (SQLite); on both databases."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from orchestrator.integrations.previews import cache_folder
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import Callback, Event, Job, Photo, PhotoPhase, Shoot, utcnow
from orchestrator.store.prune import prune
from orchestrator.store.queries import Store
from tests.helpers import cli_env, orchestrator
from tests.store_support import stored_job

DAYS_OLD = timedelta(days=100)


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _job(store: Store, state: str, age: timedelta, *, photos: int = 3) -> str:
    then = utcnow() - age
    finished = then if state in {"completed", "failed", "cancelled"} else None
    job_id = await stored_job(
        store,
        name=f"shoot-{state}",
        photos=photos,
        state=state,
        created_at=then,
        updated_at=then,
        finished_at=finished,
    )
    async with store.engine.begin() as conn:
        photo_ids = (await conn.execute(select(Photo.id).where(Photo.job_id == job_id))).scalars()
        for photo_id in photo_ids:
            await conn.execute(
                insert(PhotoPhase).values(
                    photo_id=photo_id, phase="upload", job_id=job_id, done_at=then
                )
            )
    await store.add_event(job_id, "note", "something happened")
    return job_id


async def _rows_of(store: Store, job_id: str) -> dict[str, list[Any]]:
    async with store.engine.connect() as conn:
        return {
            table.__tablename__: [
                tuple(row)
                for row in await conn.execute(
                    select(table).where(table.job_id == job_id)  # type: ignore[attr-defined]
                )
            ]
            for table in (Photo, PhotoPhase, Event, Callback)
        }


async def _callback(
    store: Store, job_id: str, status: str, processed_ago: timedelta | None
) -> None:
    processed = None if processed_ago is None else utcnow() - processed_ago
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(Callback).values(
                project_uuid=f"p-{job_id}",
                action="edit",
                status=status,
                job_id=job_id,
                received_at=utcnow() - timedelta(days=3),
                processed_at=processed,
            )
        )


async def test_prune_removes_only_finished_jobs_past_the_age(store: Store) -> None:
    old = [await _job(store, state, DAYS_OLD) for state in ("completed", "failed", "cancelled")]
    recent = await _job(store, "completed", timedelta(days=5))
    live = await _job(store, "editing", DAYS_OLD)
    waiting = await _job(store, "reviewing", DAYS_OLD)
    await _callback(store, live, "Completed", processed_ago=timedelta(days=2))
    await _callback(store, live, "Failed", processed_ago=timedelta(hours=1))
    await _callback(store, waiting, "Completed", processed_ago=None)
    kept_before = {job_id: await _rows_of(store, job_id) for job_id in (recent, live, waiting)}

    dry = await prune(store, older_than=timedelta(days=30), dry_run=True)
    assert (dry.jobs, dry.photos, dry.events, dry.callbacks) == (3, 9, 6, 1)
    async with store.engine.connect() as conn:
        assert len((await conn.execute(select(Job.id))).all()) == 6, "a dry run removed jobs"

    report = await prune(store, older_than=timedelta(days=30))
    assert (report.jobs, report.photos, report.events, report.callbacks) == (3, 9, 6, 1)
    async with store.engine.connect() as conn:
        remaining = set((await conn.execute(select(Job.id))).scalars())
        orphans = (
            await conn.execute(select(PhotoPhase.job_id).where(PhotoPhase.job_id.in_(old)))
        ).all()
    assert remaining == {recent, live, waiting}
    assert orphans == []
    kept_after = {job_id: await _rows_of(store, job_id) for job_id in (recent, live, waiting)}
    callbacks_of_live = kept_before[live].pop("callbacks")
    assert kept_after[live].pop("callbacks") == [
        row for row in callbacks_of_live if "Failed" in row
    ]
    assert kept_after == kept_before


async def test_prune_gives_the_space_back_to_the_disk_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'season.db'}"
    await upgrade(url)
    store = Store.open(url)
    try:
        for _ in range(60):
            await _job(store, "completed", DAYS_OLD, photos=40)
        report = await prune(store, older_than=timedelta(days=30))
    finally:
        await store.close()
    assert report.jobs == 60
    assert report.bytes_before is not None and report.bytes_after is not None
    assert report.bytes_after < report.bytes_before / 2


async def test_the_prune_command_counts_then_removes(
    migrated_db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store.open(migrated_db_url)
    try:
        old = await _job(store, "completed", DAYS_OLD)
        live = await _job(store, "editing", DAYS_OLD)
        async with store.engine.begin() as conn:  # shoots as old as their jobs
            await conn.execute(update(Shoot).values(created_at=utcnow() - DAYS_OLD))
            shoot_of = {row[0]: row[1] for row in await conn.execute(select(Job.id, Job.shoot_id))}
    finally:
        await store.close()
    env = cli_env("http://127.0.0.1:9/v1", migrated_db_url)
    # The review page's thumbnails of both jobs, and a folder of the user's own in the cache.
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    monkeypatch.setenv("XDG_CACHE_HOME", env["XDG_CACHE_HOME"])
    thumbnails = cache_folder(migrated_db_url)
    for name in (old, live, "notes"):
        (thumbnails / name).mkdir(parents=True)
        (thumbnails / name / "1-0.jpg").write_bytes(b"thumbnail")

    dry = orchestrator("prune", "--older-than", "30", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) | {"cutoff": None, "bytes_before": None, "bytes_after": None} == {
        "cutoff": None,
        "dry_run": True,
        "jobs": 1,
        "photos": 3,
        "events": 2,
        "callbacks": 0,
        "bytes_before": None,
        "bytes_after": None,
        "events_folded": 0,
        "shoots": 1,
        "thumbnails": 0,
    }
    assert (thumbnails / old).is_dir()  # a dry run removes nothing
    done = orchestrator("prune", "--older-than", "30", env=env)
    assert done.returncode == 0, done.stderr
    assert "removed 1 job that ended before" in done.stdout
    assert "3 photos, 2 events" in done.stdout
    assert "removed the review thumbnails of 1 pruned job" in done.stdout
    assert sorted(p.name for p in thumbnails.iterdir()) == sorted([live, "notes"])

    store = Store.open(migrated_db_url)
    try:
        async with store.engine.connect() as conn:
            remaining = set((await conn.execute(select(Job.id))).scalars())
            shoots = set((await conn.execute(select(Shoot.id))).scalars())
    finally:
        await store.close()
    assert remaining == {live} and old not in remaining
    assert "removed 1 shoot left without jobs" in done.stdout
    assert shoots == {shoot_of[live]}


async def _line(store: Store, job_id: str, kind: str, ago: timedelta, message: str) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            insert(Event).values(job_id=job_id, at=utcnow() - ago, kind=kind, message=message)
        )


async def _history(store: Store, job_id: str) -> list[tuple[str, str]]:
    return [(e.kind, e.message) for e in await store.events(job_id)]


async def test_prune_folds_the_repeated_old_lines_of_the_jobs_it_keeps(store: Store) -> None:
    """A job paused for days while Imagen was down: its old `paused` and `lease` lines fold to
    first, one summary in their place, last; everything else of its history, its row and the
    last day's lines stay as they were; a second prune folds nothing more."""
    live = await _job(store, "editing", timedelta(days=40))
    await _line(store, live, "transition", timedelta(days=4), "edit requested")
    for n in range(50):
        await _line(store, live, "paused", timedelta(days=3, minutes=-n), f"Imagen down ({n})")
        if n == 25:
            await _line(store, live, "note", timedelta(days=3, minutes=-n), "half way")
    for n in range(3):
        await _line(store, live, "lease", timedelta(days=2, minutes=-n), f"taken over ({n})")
    for n in range(4):
        await _line(store, live, "paused", timedelta(hours=1, minutes=-n), f"again ({n})")
    other = await _job(store, "reviewing", timedelta(days=10))
    await _line(store, other, "paused", timedelta(days=2), "once")
    await _line(store, other, "paused", timedelta(days=2, minutes=-1), "twice")
    old = await _job(store, "completed", DAYS_OLD)
    for n in range(5):  # pruned with its job, not folded
        await _line(store, old, "paused", DAYS_OLD, f"old ({n})")
    before = await _history(store, live)
    other_before = await _history(store, other)
    row_before = await store.get_job(live)

    dry = await prune(store, older_than=timedelta(days=30), dry_run=True)
    assert dry.events_folded == 48 + 1
    assert await _history(store, live) == before, "a dry run folded lines"

    report = await prune(store, older_than=timedelta(days=30))
    assert (report.jobs, report.events_folded) == (1, 49)
    after = await _history(store, live)
    folded = [message for kind, message in after if kind == "folded"]
    assert len(folded) == 2
    assert folded[0].startswith("48 more 'paused' lines from ")
    assert folded[1].startswith("1 more 'lease' lines from ")
    # In order: the first paused line, the summary in the place of the 48, the note between
    # them, the last old paused line; the lease run likewise; the last day's lines untouched.
    paused_or_folded = [
        line for line in after if line[0] in {"paused", "folded"} or line[1] == "half way"
    ]
    assert paused_or_folded[:4] == [
        ("paused", "Imagen down (0)"),
        ("folded", folded[0]),
        ("note", "half way"),
        ("paused", "Imagen down (49)"),
    ]
    assert [m for k, m in after if k == "lease"] == ["taken over (0)", "taken over (2)"]
    assert [m for k, m in after if k == "paused"][-4:] == [f"again ({n})" for n in range(4)]
    unfolded = [line for line in before if line[0] not in {"paused", "lease"}]
    assert [line for line in after if line[0] not in {"paused", "lease", "folded"}] == unfolded
    assert await _history(store, other) == other_before  # two lines are no run
    row_after = await store.get_job(live)
    assert (row_after.state, row_after.updated_at, row_after.lease_epoch) == (
        row_before.state,
        row_before.updated_at,
        row_before.lease_epoch,
    )

    again = await prune(store, older_than=timedelta(days=30))
    assert (again.jobs, again.events_folded) == (0, 0)
    assert await _history(store, live) == after
