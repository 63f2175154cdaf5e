"""The lease heartbeat rides out a database that stops answering, up to the lease's end.

A daemon's database can restart under it; a renewal that fails must not stop the job while
its lease still holds (no other worker may take it before it expires), and must stop it once
the lease has run out (another worker may own the job by then).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import pytest

from orchestrator.states import JobState
from orchestrator.store.migrate import upgrade
from orchestrator.store.queries import Lease, StaleLease, Store
from tests.conftest import MakeDbUrl
from tests.engine_harness import harness
from tests.resume_support import make_crash_shoot

LEASE_TTL = 1.5


class _RenewalsFail(Store):
    """A store whose lease renewals fail as if the database were down, for `outage` seconds."""

    def __init__(self, store: Store, outage: float) -> None:
        super().__init__(store.engine)
        self.outage_ends = time.monotonic() + outage
        self.failed = 0

    async def renew(self, lease: Lease, ttl: float) -> bool:
        if time.monotonic() < self.outage_ends:
            self.failed += 1
            raise OSError("connection refused")
        return await super().renew(lease, ttl)


@pytest.mark.parametrize(
    ("outage", "survives"),
    [(LEASE_TTL / 2, True), (3600.0, False)],
    ids=["shorter-than-the-lease", "longer-than-the-lease"],
)
async def test_failed_renewals_stop_the_job_only_when_the_lease_has_run_out(
    outage: float, survives: bool, make_db_url: MakeDbUrl, tmp_path: Path
) -> None:
    url = await make_db_url()
    await upgrade(url)
    # Each edit takes longer than a lease, so the job renews while it polls.
    async with harness(url, edit_seconds=3 * LEASE_TTL) as h:
        h.config = dataclasses.replace(h.config, lease_ttl=LEASE_TTL, cancel_poll_seconds=0.1)
        make_crash_shoot(tmp_path / "shoot", jpeg_only=True)
        [job_id] = await h.plan(tmp_path / "shoot")
        store = _RenewalsFail(h.store, outage)
        engine = h.engine("heartbeat-test", store=store)
        if survives:
            outcome = await engine.drive(job_id)
            assert outcome.job.state == JobState.COMPLETED.value
        else:
            started = time.monotonic()
            with pytest.raises(StaleLease):
                await engine.drive(job_id)
            assert time.monotonic() - started >= LEASE_TTL - 0.2
            job = await h.store.get_job(job_id)
            assert job.state not in (JobState.COMPLETED.value, JobState.FAILED.value)
        assert store.failed >= 1
