"""Job lists that stay small at a studio's size: `status` shows the live jobs and the newest
finished ones, `/api/jobs` pages through every job newest first; on both databases."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from orchestrator.service import jobs as job_views
from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store
from tests.helpers import cli_env, orchestrator
from tests.store_support import stored_job


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _jobs(store: Store, states: list[str]) -> list[str]:
    """Jobs in these states, the first one the oldest, a minute apart; their ids, oldest first."""
    start = utcnow() - timedelta(days=1)
    return [
        await stored_job(
            store,
            name=f"shoot-{index}",
            photos=index % 3 + 1,
            state=state,
            created_at=start + timedelta(minutes=index),
        )
        for index, state in enumerate(states)
    ]


async def test_status_shows_every_live_job_and_the_newest_finished_ones(store: Store) -> None:
    states = ["completed"] * 25 + ["editing", "failed", "reviewing"] + ["cancelled"] * 5
    ids = await _jobs(store, states)
    shown = await job_views.status(store)
    live = {ids[25], ids[27]}
    assert live <= {view["id"] for view in shown}
    assert len(shown) == 2 + job_views.RECENT_FINISHED
    assert [view["id"] for view in shown] == [
        job_id for job_id in reversed(ids) if job_id in {view["id"] for view in shown}
    ], "not newest first"
    assert await job_views.finished_not_shown(store, shown) == 31 - job_views.RECENT_FINISHED
    assert len(await job_views.status(store, everything=True)) == len(states)
    assert [view["photos"] for view in await job_views.status(store, ref=ids[4])] == [2]
    assert len(await job_views.status(store, limit=3)) == 3


async def test_api_pages_cover_every_job_once_newest_first(store: Store) -> None:
    ids = await _jobs(store, ["completed", "editing"] * 12)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        page = await job_views.jobs_page(store, limit=5, cursor=cursor)
        assert ("refused" in page) == (cursor is None)
        seen += [view["id"] for view in page["jobs"]]
        pages += 1
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert pages == 5
    editing = await job_views.jobs_page(store, state="editing", limit=100)
    assert [view["id"] for view in editing["jobs"]] == list(reversed(ids[1::2]))
    assert editing["next"] is None


@pytest.mark.parametrize("cursor", ["garbage", "bm90LWEtY3Vyc29y"])
async def test_a_cursor_not_given_out_is_refused(store: Store, cursor: str) -> None:
    await _jobs(store, ["completed"])
    with pytest.raises(job_views.BadCursor):
        await job_views.jobs_page(store, cursor=cursor)


async def test_the_status_command_says_what_it_left_out(migrated_db_url: str) -> None:
    store = Store.open(migrated_db_url)
    try:
        await _jobs(store, ["completed"] * 23 + ["editing"])
    finally:
        await store.close()
    env = cli_env("http://127.0.0.1:9/v1", migrated_db_url)
    shown = orchestrator("status", env=env)
    assert shown.returncode == 0, shown.stderr
    assert "and 3 older finished shoots: `orchestrator status --all`" in shown.stdout
    everything = orchestrator("status", "--all", env=env)
    assert "older finished" not in everything.stdout
    assert everything.stdout.count("shoot-") == 2 * 24  # each shoot, and its one job
