"""The daemons' claim reads only live daemon jobs, through their partial index, on both
databases: its cost follows the jobs at work, not the finished ones a season leaves
(`benchmarks/growth.py` times it at 1,000 and 100,000 stored jobs). A job's counts per phase
(every view of a job) read the phases' indexes, never the rows (`benchmarks/pages.py` times the
page of a 20,000-photo job)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event, text
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import due_jobs_query
from orchestrator.store.tallies import phase_counts

LIVE_INDEXES = ("ix_jobs_live_daemon_wake_at", "ix_jobs_live_created_at")
"""The partial indexes of live jobs (migration 0006): either keeps the claim off finished jobs."""


async def test_the_claim_of_due_jobs_uses_the_live_jobs_index(migrated_db_url: str) -> None:
    store = Store.open(migrated_db_url)
    try:
        postgres = store.engine.dialect.name == "postgresql"
        dialect = postgresql.dialect() if postgres else sqlite.dialect()
        sql = due_jobs_query(utcnow(), 10).compile(
            dialect=dialect, compile_kwargs={"literal_binds": True}
        )
        async with store.engine.connect() as conn:
            if postgres:
                # An empty table is cheapest to scan whole; forbid that, so the plan shows
                # whether the index can serve the query at all (its condition implied).
                await conn.execute(text("SET enable_seqscan = off"))
            explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
            plan = " ".join(
                str(part) for row in await conn.execute(text(f"{explain} {sql}")) for part in row
            )
    finally:
        await store.close()
    assert any(index in plan for index in LIVE_INDEXES), plan


async def test_a_jobs_counts_per_phase_read_the_phase_indexes(migrated_db_url: str) -> None:
    store = Store.open(migrated_db_url)
    asked: list[tuple[str, Any]] = []

    def keep(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT") and "photo_phases" in statement:
            asked.append((statement, parameters))

    event.listen(store.engine.sync_engine, "before_cursor_execute", keep)
    try:
        job_id = "f" * 32
        await phase_counts(store, job_id)  # done per phase, then failed for good per phase
        await store.phases_done([job_id])
        await store.photo_page(job_id, after=None, limit=51, failed=True)
        event.remove(store.engine.sync_engine, "before_cursor_execute", keep)
        postgres = store.engine.dialect.name == "postgresql"
        plans = []
        async with store.engine.connect() as conn:
            if postgres:
                await conn.execute(text("SET enable_seqscan = off"))  # as above
            explain = "EXPLAIN" if postgres else "EXPLAIN QUERY PLAN"
            for statement, parameters in asked:
                found = await conn.exec_driver_sql(f"{explain} {statement}", parameters)
                plans.append(" ".join(str(part) for row in found for part in row))
    finally:
        await store.close()
    done_counts, failed_counts, done_by_job, failed_page = plans
    if postgres:  # no statistics on empty tables: an index, which one is the planner's choice
        assert all("ix_photo_phases_" in plan and "Seq Scan" not in plan for plan in plans), plans
        return
    # The done counts are answered by the covering index alone, never the rows.
    for plan in (done_counts, done_by_job):
        assert "COVERING INDEX ix_photo_phases_job_phase_done" in plan, plan
    # The failed ones search an index of the job's rows (the partial index of failed rows once
    # the database has statistics), never the whole table.
    for plan in (failed_counts, failed_page):
        assert "SEARCH photo_phases USING" in plan and "ix_photo_phases_" in plan, plan
