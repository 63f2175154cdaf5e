"""Waiting for Imagen in daemon mode: the backoff and the deadline count from the state's start.

Each poll writes the job's next `poll_at`, which touches the job row; the time already waited
must still come from when the job entered `editing`, or a long edit would be polled every
`poll_initial` seconds forever and the deadline (the job's `wake_at`) would never fire.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import update

from orchestrator.service import jobs as job_views
from orchestrator.states import JobState
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import Event, utcnow
from orchestrator.store.queries import Store
from tests.conftest import MakeDbUrl
from tests.engine_harness import harness
from tests.resume_support import make_crash_shoot

POLL_INITIAL = 10.0
POLL_MAX = 600.0
DEADLINE = 20 * 3600.0


async def _entered_editing(store: Store, job_id: str, at: datetime) -> None:
    async with store.engine.begin() as conn:
        await conn.execute(
            update(Event)
            .where(Event.job_id == job_id, Event.to_state == JobState.EDITING.value)
            .values(at=at)
        )


async def test_a_long_edit_is_polled_rarely_and_fails_at_the_deadline(
    make_db_url: MakeDbUrl, tmp_path: Path
) -> None:
    url = await make_db_url()
    await upgrade(url)
    # The sandbox takes an hour per edit: the job stays in `editing` for the whole test.
    async with harness(url, edit_seconds=3600) as h:
        h.config = dataclasses.replace(
            h.config,
            wait_inline=False,
            poll_initial=POLL_INITIAL,
            poll_max=POLL_MAX,
            wait_deadline=DEADLINE,
        )
        make_crash_shoot(tmp_path / "shoot", jpeg_only=True)
        [job_id] = await h.plan(tmp_path / "shoot")

        first = await h.drive(job_id)
        assert first.waiting and first.job.state == JobState.EDITING.value
        assert first.job.poll_at is not None
        assert first.job.poll_at - utcnow() <= timedelta(seconds=POLL_INITIAL)
        # No drive before the deadline unless there is news: the poller asks meanwhile.
        assert first.job.wake_at is not None
        assert first.job.wake_at - utcnow() > timedelta(seconds=DEADLINE - 60)

        # Two hours into the edit, with the row just touched by the last wake-up's write.
        await _entered_editing(h.store, job_id, utcnow() - timedelta(hours=2))
        later = await h.drive(job_id)
        assert later.waiting and later.job.poll_at is not None
        assert later.job.poll_at - utcnow() > timedelta(seconds=POLL_MAX - 60)

        await _entered_editing(h.store, job_id, utcnow() - timedelta(hours=21))
        late = await h.drive(job_id)
        assert late.job.state == JobState.FAILED.value
        assert "did not finish within 20 h" in (late.job.last_error or "")
        # `orchestrator retry` waits again, with a fresh deadline counted from the retry.
        retried = await job_views.retry(h.store, job_id)
        assert retried.state == JobState.EDITING.value
        again = await h.drive(job_id)
        assert again.waiting and again.job.state == JobState.EDITING.value
