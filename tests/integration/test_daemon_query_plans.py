"""The daemons' claim reads only live daemon jobs, through their partial index, on both
databases: its cost follows the jobs at work, not the finished ones a season leaves
(`benchmarks/growth.py` times it at 1,000 and 100,000 stored jobs)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite

from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import due_jobs_query

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
