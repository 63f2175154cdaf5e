"""A daemon with ORCH_PRUNE_AFTER_DAYS prunes at its start: the old finished job goes, the live
one stays, and the log says what went (a real daemon process on a real database)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from orchestrator.store.models import Job
from orchestrator.store.queries import Store
from tests.daemon_support import Daemon, daemon_env, migrated, wait_for
from tests.integration.test_prune import DAYS_OLD, _job


def test_a_daemon_prunes_old_finished_jobs_at_its_start(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    url = migrated(f"sqlite:///{tmp_path / 'jobs.db'}")

    async def seed() -> tuple[str, str]:
        store = Store.open(url)
        try:
            return (
                await _job(store, "completed", DAYS_OLD),
                await _job(store, "completed", timedelta(days=2)),
            )
        finally:
            await store.close()

    async def remaining() -> set[str]:
        store = Store.open(url)
        try:
            async with store.engine.connect() as conn:
                return set((await conn.execute(select(Job.id))).scalars())
        finally:
            await store.close()

    old, recent = asyncio.run(seed())
    daemon = Daemon(daemon_env("http://127.0.0.1:9/v1", url, ORCH_PRUNE_AFTER_DAYS="30"), tmp_path)
    daemons.append(daemon.start())
    wait_for(lambda: "pruned the database" in daemon.logs(), timeout=60)
    assert asyncio.run(remaining()) == {recent}
    [record] = [r for r in daemon.log_records() if r["msg"] == "pruned the database"]
    assert record["jobs"] == 1 and record["photos"] == 3
    assert old not in asyncio.run(remaining())
