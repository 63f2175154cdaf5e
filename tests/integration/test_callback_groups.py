"""Callbacks written in groups, on both databases: a burst arriving together is kept once per
news with each sender's own verdict, in far fewer writes than callbacks (a transaction each on
SQLite, one statement each on Postgres)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from sqlalchemy import event, func, select

from orchestrator.service.receiver import GroupInbox
from orchestrator.states import JobState
from orchestrator.store.inbox import Arrival, Verdict, deliver_callbacks
from orchestrator.store.models import Callback, Event, utcnow
from orchestrator.store.queries import Store
from tests.store_support import stored_job


@pytest.fixture
async def store(migrated_db_url: str) -> AsyncIterator[Store]:
    store = Store.open(migrated_db_url)
    yield store
    await store.close()


async def _waiting_jobs(store: Store, count: int) -> list[tuple[str, str, str]]:
    """`count` jobs waiting on their edits: (job id, secret hash, project) each."""
    jobs = []
    for n in range(count):
        secret, project = f"{n:064x}", f"project-{n}"
        job_id = await stored_job(
            store,
            daemon=True,
            state=JobState.EDITING.value,
            project_uuid=project,
            callback_secret_hash=secret,
            wake_at=utcnow() + timedelta(hours=1),
        )
        jobs.append((job_id, secret, project))
    return jobs


async def test_one_group_gives_each_arrival_its_own_verdict(store: Store) -> None:
    (first, secret, project), (second, secret2, project2) = await _waiting_jobs(store, 2)
    arrivals = [
        Arrival(secret, project, "edit", "completed"),
        Arrival(secret, project, "edit", "completed"),  # the same news twice in one group
        Arrival("f" * 64, project, "edit", "completed"),  # nobody's secret
        Arrival(secret2, project, "edit", "completed"),  # another job's project
        Arrival(secret2, project2, "edit", "failed"),
    ]
    verdicts = [d.verdict for d in await deliver_callbacks(store, arrivals)]
    assert verdicts == [
        Verdict.ACCEPTED,
        Verdict.DUPLICATE,
        Verdict.UNKNOWN_SECRET,
        Verdict.WRONG_PROJECT,
        Verdict.ACCEPTED,
    ]
    # Already in the inbox: a later group finds it a duplicate.
    [again] = await deliver_callbacks(store, arrivals[:1])
    assert (again.verdict, again.job_id) == (Verdict.DUPLICATE, first)
    for job_id in (first, second):
        job = await store.get_job(job_id)
        assert job.wake_at is not None and job.wake_at <= utcnow()
        assert [e.kind for e in await store.events(job_id)].count("callback") == 1


async def test_a_burst_is_kept_once_per_news_in_few_writes(store: Store) -> None:
    jobs = await _waiting_jobs(store, 60)
    writes = 0

    def count_write(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        nonlocal writes
        writes += "INSERT INTO callbacks" in statement

    event.listen(store.engine.sync_engine, "before_cursor_execute", count_write)
    inbox = GroupInbox(store)
    # Each job's completed edit, each sent twice (a flaky sender), all at once.
    arrivals = [Arrival(secret, project, "edit", "completed") for _, secret, project in jobs] * 2
    deliveries = await asyncio.gather(*(inbox.deliver(a) for a in arrivals))
    verdicts = [d.verdict for d in deliveries]
    assert verdicts.count(Verdict.ACCEPTED) == 60
    assert verdicts.count(Verdict.DUPLICATE) == 60
    accepted = {d.job_id for d in deliveries if d.verdict is Verdict.ACCEPTED}
    assert accepted == {job_id for job_id, _, _ in jobs}
    assert 1 <= writes <= 3  # the first arrival alone, then the rest together (not 120)
    async with store.engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Callback))).scalar() == 60
        stored_events = select(func.count()).where(Event.kind == "callback")
        assert (await conn.execute(stored_events)).scalar() == 60


async def test_a_finished_job_keeps_its_callback_but_is_not_woken(store: Store) -> None:
    [(waiting, secret, project)] = await _waiting_jobs(store, 1)
    finished = await stored_job(
        store,
        daemon=True,
        state=JobState.COMPLETED.value,
        project_uuid="project-done",
        callback_secret_hash="e" * 64,
    )
    deliveries = await deliver_callbacks(
        store,
        [
            Arrival("e" * 64, "project-done", "export", "completed"),
            Arrival(secret, project, "edit", "completed"),
        ],
    )
    assert [(d.verdict, d.job_id) for d in deliveries] == [
        (Verdict.ACCEPTED, finished),
        (Verdict.ACCEPTED, waiting),
    ]
    assert (await store.get_job(finished)).wake_at is None
    woken = (await store.get_job(waiting)).wake_at
    assert woken is not None and woken <= utcnow()
    assert [e.message for e in await store.events(finished)][-1] == "Imagen: export completed"
