"""The daemon's HTTP side runs on a thread of its own: a callback is answered, stored and wakes
the scheduler while the jobs' event loop is blocked; /healthz says when that loop is stuck; a
start that cannot listen fails with its reason; both databases."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import pytest
from sqlalchemy import select

from orchestrator.config import Settings
from orchestrator.daemon_app import http_side
from orchestrator.listening import CannotListen
from orchestrator.service.http import Access
from orchestrator.service.loop_thread import in_own_thread, turns
from orchestrator.service.metrics import Metrics
from orchestrator.service.wakeups import Wakeups
from orchestrator.states import JobState
from orchestrator.store.models import Callback
from orchestrator.store.queries import Store
from orchestrator.workflow.processing import callback_secret_hash
from tests.store_support import stored_job

SECRET = "s" * 43
PROJECT = "project-1"


async def _always_alive() -> bool:
    return True


@asynccontextmanager
async def _http(
    url: str,
    wakeups: Wakeups,
    *,
    port: int = 0,
    alive: Callable[[], Awaitable[bool]] = _always_alive,
) -> AsyncIterator[str]:
    """The daemon's HTTP side on its own thread over the database at `url`; its base URL."""
    settings = Settings(database_url=url)
    access = Access(names=frozenset({"127.0.0.1"}), token=None)
    async with in_own_thread(
        lambda: http_side(
            settings,
            access=access,
            listen=("127.0.0.1", port),
            wakeups=wakeups,
            metrics=Metrics(),
            alive=alive,
        ),
        name="http",
    ) as base:
        yield base


def _blocking(method: str, url: str, body: dict[str, str] | None = None) -> int:
    """The status of a request made without giving the event loop a turn until answered."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            status: int = answer.status
    except urllib.error.HTTPError as refused:
        status = refused.code
    return status


@pytest.fixture(autouse=True)
def _no_config_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_CONFIG", os.devnull)


async def test_a_callback_is_answered_and_wakes_the_scheduler_while_the_jobs_loop_is_blocked(
    migrated_db_url: str,
) -> None:
    store = Store.open(migrated_db_url)
    try:
        job_id = await stored_job(
            store,
            daemon=True,
            state=JobState.EDITING.value,
            project_uuid=PROJECT,
            callback_secret_hash=callback_secret_hash(SECRET),
        )
        wakeups = Wakeups()
        async with _http(migrated_db_url, wakeups) as base:
            # This loop stands still until the answer comes: only another loop can give it.
            status = _blocking(
                "POST",
                f"{base}/callbacks/{SECRET}",
                {"project_uuid": PROJECT, "action": "edit", "status": "completed"},
            )
            assert status == 202
            async with asyncio.timeout(30):
                await wakeups.wait(3600)  # returns early only when woken
            again = _blocking(
                "POST",
                f"{base}/callbacks/{SECRET}",
                {"project_uuid": PROJECT, "action": "edit", "status": "completed"},
            )
            assert again == 200  # a duplicate
        async with store.engine.connect() as conn:
            kept = (await conn.execute(select(Callback.job_id))).scalars().all()
        assert kept == [job_id]
    finally:
        await store.close()


async def test_healthz_says_stuck_while_the_jobs_loop_does_not_turn(
    migrated_db_url: str,
) -> None:
    jobs_loop = asyncio.get_running_loop()

    async def alive() -> bool:
        return await turns(jobs_loop, within=0.5)

    async with _http(migrated_db_url, Wakeups(), alive=alive) as base:
        assert _blocking("GET", f"{base}/healthz") == 503
        async with aiohttp.ClientSession() as session, session.get(f"{base}/healthz") as answer:
            assert answer.status == 200
            assert await answer.json() == {"status": "alive"}


async def test_a_port_already_taken_stops_the_start_with_its_reason(migrated_db_url: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListen, match="the port is in use"):
            async with _http(migrated_db_url, Wakeups(), port=port):
                pass
