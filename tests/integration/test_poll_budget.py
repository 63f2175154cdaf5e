"""The daemons' safety-net polls: one budget for every daemon on the database, fairly spent.

Two pollers on two store connections stand for two daemons; the sandbox on a real port counts
every status request it answers. Demand is far above the budget: each job is due again 0.1 s
after its poll.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta

import pytest
from aiohttp import web
from sqlalchemy import select, update

from orchestrator.imagen.client import ImagenClient
from orchestrator.sandbox.config import SandboxConfig
from orchestrator.sandbox.server import start_sandbox
from orchestrator.service.polling import IDLE_SECONDS, ROUND_SECONDS, Poller, PollSettings
from orchestrator.service.wakeups import Wakeups
from orchestrator.states import JobState
from orchestrator.store.models import Job, utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import claim_due_jobs
from orchestrator.transfer.manager import TransferSettings, make_session
from orchestrator.workflow.context import EngineConfig
from tests.store_support import stored_job

API_KEY = "poll-budget-key-0123456789"
BUDGET = 8.0
JOBS = 24
CONFIG = dataclasses.replace(EngineConfig(), wait_inline=False, poll_initial=0.1, poll_max=0.1)


@dataclasses.dataclass
class Seen:
    """Status requests as the sandbox answered them: (time, project)."""

    requests: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    enough: asyncio.Event = dataclasses.field(default_factory=asyncio.Event)
    """Set once three rounds of every job have been asked."""


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[str, Seen]]:
    seen = Seen()

    @web.middleware
    async def count(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.path.endswith("/status"):
            seen.requests.append((time.monotonic(), request.path.split("/")[-3]))
            if len(seen.requests) >= 3 * JOBS:
                seen.enough.set()
        return await handler(request)

    running = await start_sandbox(SandboxConfig(edit_seconds=3600), observers=[count])
    try:
        yield running.api_url, seen
    finally:
        await running.close()


async def _waiting_jobs(store: Store, count: int) -> list[str]:
    """Jobs waiting on an edit, their polls overdue by 1..count seconds, oldest first."""
    now = utcnow()
    projects = [str(uuid.uuid4()) for _ in range(count)]
    for n, project in enumerate(projects):
        await stored_job(
            store,
            name=f"j{n}",
            daemon=True,
            state=JobState.EDITING.value,
            project_uuid=project,
            poll_at=now - timedelta(seconds=count - n),
            wake_at=now + timedelta(hours=20),
        )
    return projects


async def test_two_daemons_share_one_budget_and_every_job_is_polled_before_any_twice(
    migrated_db_url: str, sandbox: tuple[str, Seen]
) -> None:
    api_url, seen = sandbox
    stores = [Store.open(migrated_db_url) for _ in range(2)]
    session = make_session(TransferSettings())
    stop = asyncio.Event()
    try:
        projects = await _waiting_jobs(stores[0], JOBS)
        settings = PollSettings(budget=BUDGET, lease_ttl=30)
        pollers = [
            Poller(
                store=store,
                imagen=ImagenClient(session, base_url=api_url, api_key=API_KEY),
                config=CONFIG,
                owner=f"daemon-{n}",
                settings=settings,
                wakeups=Wakeups(),
            )
            for n, store in enumerate(stores)
        ]
        runs = [asyncio.create_task(p.run(stop)) for p in pollers]
        await asyncio.wait(
            [asyncio.ensure_future(seen.enough.wait()), *runs],
            timeout=60,
            return_when=asyncio.FIRST_COMPLETED,
        )
        assert seen.enough.is_set(), "the pollers stopped or took over a minute"
        stop.set()
        await asyncio.gather(*runs)
    finally:
        stop.set()
        await session.close()
        for store in stores:
            await store.close()

    times = [at for at, _ in seen.requests]
    # Over any stretch of grants, at most the budget's rate plus its one burst. The sandbox
    # sees requests, not grants: a round granted earlier can reach it late, in the same stretch
    # as the next (a busy machine delays sending), so a round's worth more is allowed here;
    # over the whole run that slack is small beside what an overspent budget would add.
    for i in range(len(times)):
        for j in range(i + 1, len(times)):
            allowed = BUDGET * (times[j] - times[i] + settings.burst + ROUND_SECONDS) + 1
            assert j - i + 1 <= allowed, (i, j, times[j] - times[i])
    # Both daemons polled: the budget is shared, not one daemon's.
    assert all(p.polls > 0 for p in pollers)
    # Fair: the longest overdue first, so every job is asked once before any is asked twice
    # (a round's requests are sent together and reach the sandbox in any order, within
    # milliseconds), and none falls behind: after three rounds of every job and more, no job
    # was asked twice more than another.
    firsts: dict[str, float] = {}
    seconds: dict[str, float] = {}
    for at, project in seen.requests:
        (seconds if project in firsts else firsts).setdefault(project, at)
    assert set(firsts) == set(projects)
    assert max(firsts.values()) <= min(seconds.values()) + 0.1
    asked = Counter(project for _, project in seen.requests)
    assert max(asked.values()) - min(asked.values()) <= 1, asked


async def test_a_job_past_its_deadline_goes_to_a_drive_and_one_not_due_is_left_alone(
    migrated_db_url: str, sandbox: tuple[str, Seen]
) -> None:
    api_url, seen = sandbox
    store = Store.open(migrated_db_url)
    session = make_session(TransferSettings())
    try:
        await _waiting_jobs(store, 2)
        async with store.engine.begin() as conn:
            jobs = list((await conn.execute(select(Job.id).order_by(Job.poll_at))).scalars())
            late, later = jobs
            await conn.execute(
                update(Job).where(Job.id == late).values(wake_at=utcnow() - timedelta(seconds=1))
            )
            await conn.execute(
                update(Job).where(Job.id == later).values(poll_at=utcnow() + timedelta(hours=1))
            )
        poller = Poller(
            store=store,
            imagen=ImagenClient(session, base_url=api_url, api_key=API_KEY),
            config=CONFIG,
            owner="daemon",
            settings=PollSettings(budget=BUDGET, lease_ttl=30),
            wakeups=Wakeups(),
        )
        next_look = await poller.round()
        # Nothing asked: the deadline is the drive's to report; the other is not due.
        assert seen.requests == []
        assert next_look == IDLE_SECONDS  # the other's poll is an hour away
        [claim] = await claim_due_jobs(store, "daemon", 30, 10)
        assert claim.lease.job_id == late
        async with store.engine.connect() as conn:
            polls = dict((await conn.execute(select(Job.id, Job.poll_at))).all())
        assert polls[late] is None and polls[later] is not None
    finally:
        await session.close()
        await store.close()
