"""What a season of stored jobs costs the daemons' idle queries, at 1,000 and 100,000 jobs.

A studio's database fills with finished jobs; the queries every daemon runs all the time (the
claim of due jobs, the next wake-up) must cost the same whether it holds a thousand or a
hundred thousand. The history is synthetic (rows inserted directly, as a season would leave
them: finished jobs plus a set of live ones waiting on Imagen), built in seconds instead of the
hours real jobs would take. Each query is timed (median of repeated calls) and its plan printed.
Then the lists a person reads: `status`'s default view (every live job and the 20 newest
finished ones) and the first page of `/api/jobs` (100 jobs), each timed and weighed as JSON.

    ORCH_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python benchmarks/growth.py
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import os
import statistics
import time
import uuid
from datetime import timedelta

from common import insert_rows, shoot_rows
from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import create_async_engine

from orchestrator.service.jobs import jobs_page, status
from orchestrator.store.migrate import upgrade
from orchestrator.store.models import utcnow
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import claim_due_jobs, due_jobs_query, next_due_in


async def _fresh_postgres(server: str) -> str:
    name = f"growth_{uuid.uuid4().hex[:10]}"
    admin = create_async_engine(
        server.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    await admin.dispose()
    return server.rsplit("/", 1)[0] + "/" + name


async def _drop_postgres(server: str, url: str) -> None:
    admin = create_async_engine(
        server.replace("postgresql://", "postgresql+asyncpg://"), isolation_level="AUTOCOMMIT"
    )
    async with admin.connect() as conn:
        name = url.rsplit("/", 1)[1]
        await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    await admin.dispose()


async def _fill(store: Store, finished: int, waiting: int) -> None:
    """Insert `finished` completed jobs and `waiting` live daemon jobs waiting on an edit."""
    now = utcnow()
    rows = []
    for index in range(finished + waiting):
        live = index >= finished
        job_id = uuid.uuid4().hex
        rows.append(
            {
                "id": job_id,
                "name": f"shoot-{index}",
                "source": f"/shoots/{index}",
                "image_type": "JPG",
                "edited_dir": "/e",
                "exported_dir": "/x",
                "profile_key": 1,
                "options": "{}",
                "state": "editing" if live else "completed",
                "project_name": f"orchestrator-{job_id}",
                "attempt_count": 0,
                "lease_epoch": 1,
                "cancel_requested": False,
                "queued_for_daemon": True,
                "wake_at": now + timedelta(seconds=60 + index % 600) if live else None,
                "created_at": now - timedelta(days=(finished - index) / 100),
                "updated_at": now,
            }
        )
    shoots = shoot_rows(rows)
    async with store.engine.begin() as conn:
        await insert_rows(conn, "shoots", shoots)
        await insert_rows(conn, "jobs", rows)
        if conn.dialect.name == "postgresql":
            await conn.execute(text("ANALYZE jobs"))
        else:
            await conn.execute(text("ANALYZE"))


async def _median_ms(call, rounds: int = 30) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


async def _plan(store: Store) -> str:
    query = due_jobs_query(utcnow(), 10)
    dialect = (
        postgresql.dialect() if store.engine.dialect.name == "postgresql" else sqlite.dialect()
    )
    sql = str(query.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN" if store.engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN"
    async with store.engine.connect() as conn:
        rows = (await conn.execute(text(f"{explain} {sql}"))).all()
    return "\n".join("    " + " ".join(str(part) for part in row) for row in rows)


async def measure(url: str, finished: int, waiting: int) -> tuple[float, float, str, str]:
    await upgrade(url)
    store = Store.open(url)
    try:
        await _fill(store, finished, waiting)
        claim = await _median_ms(lambda: claim_due_jobs(store, "bench", 60, limit=10))
        due = await _median_ms(lambda: next_due_in(store, "bench"))
        return claim, due, await _plan(store), await _lists(store)
    finally:
        await store.close()


async def _lists(store: Store) -> str:
    """`status`'s default view and `/api/jobs`' first page: median time and JSON size."""
    views = await status(store)
    page = await jobs_page(store)
    status_ms = await _median_ms(lambda: status(store), rounds=5)
    page_ms = await _median_ms(lambda: jobs_page(store), rounds=5)
    return (
        f"status (default): {len(views)} jobs, {len(json.dumps(views)) / 1000:,.0f} KB, "
        f"{status_ms:.0f} ms; /api/jobs first page: {len(page['jobs'])} jobs, "
        f"{len(json.dumps(page)) / 1000:,.0f} KB, {page_ms:.0f} ms"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waiting", type=int, default=1000, help="live jobs waiting on an edit")
    parser.add_argument("--sizes", default="1000,100000", help="stored finished jobs, by run")
    args = parser.parse_args()
    server = os.environ.get("ORCH_TEST_POSTGRES_URL")
    backends = ["sqlite"] + (["postgres"] if server else [])
    print(f"{args.waiting} live jobs waiting on an edit; claim and next wake-up, median of 30")
    for backend in backends:
        for finished in (int(size) for size in args.sizes.split(",")):
            if backend == "postgres":
                url = await _fresh_postgres(server or "")
            else:
                path = f"/tmp/growth-{uuid.uuid4().hex[:8]}.db"
                url = f"sqlite:///{path}"
            try:
                claim, due, plan, lists = await measure(url, finished, args.waiting)
            finally:
                if backend == "postgres":
                    await _drop_postgres(server or "", url)
                else:
                    for leftover in glob.glob(f"{path}*"):  # with its -wal and -shm
                        os.remove(leftover)
            print(
                f"{backend:8} {finished:>7} finished jobs: claim {claim:6.2f} ms, "
                f"next wake-up {due:6.2f} ms\n  {lists}\n  claim plan:\n{plan}"
            )


if __name__ == "__main__":
    asyncio.run(main())
