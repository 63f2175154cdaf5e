"""Keeping the job database small over a season: `orchestrator prune` and the daemon's own
pruning, the same call."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from datetime import timedelta
from typing import Any

from orchestrator.config import Settings
from orchestrator.integrations.previews import cache_folder, cached_jobs, forget_jobs
from orchestrator.service.database import open_store
from orchestrator.store.prune import PruneReport, prune, stored_jobs
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors

PRUNE_EVERY_SECONDS = 24 * 3600.0
"""How often a daemon prunes (with ORCH_PRUNE_AFTER_DAYS), after once at its start."""

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Pruned:
    """What a prune did: the database's report, and the pruned jobs' thumbnails removed."""

    report: PruneReport
    thumbnails: int
    """Jobs whose kept thumbnails (the review page's) were removed with them."""


async def prune_database(
    settings: Settings, *, older_than_days: float, dry_run: bool = False
) -> Pruned:
    """Remove finished jobs older than `older_than_days` and spent callbacks (see store.prune),
    and the thumbnails kept for jobs the database no longer has."""
    store = await open_store(settings)
    try:
        return await _prune(store, older_than_days, dry_run=dry_run)
    finally:
        await store.close()


async def _prune(store: Store, older_than_days: float, *, dry_run: bool) -> Pruned:
    report = await prune(store, older_than=timedelta(days=older_than_days), dry_run=dry_run)
    if dry_run:
        return Pruned(report, 0)
    folder = cache_folder(store.engine.url)
    cached = await asyncio.to_thread(cached_jobs, folder)
    gone = sorted(set(cached) - await stored_jobs(store, cached))
    await asyncio.to_thread(forget_jobs, folder, gone)
    return Pruned(report, len(gone))


def report_json(pruned: Pruned) -> dict[str, Any]:
    """The report as `prune --json` prints it."""
    report = pruned.report
    return {
        **dataclasses.asdict(report),
        "cutoff": report.cutoff.isoformat(),
        "thumbnails": pruned.thumbnails,
    }


async def prune_daily(store: Store, older_than_days: float, stop: asyncio.Event) -> None:
    """The daemon's pruning: at start, then every `PRUNE_EVERY_SECONDS` until `stop`. A
    database that does not answer is logged and tried again at the next turn."""
    while not stop.is_set():
        try:
            pruned = await _prune(store, older_than_days, dry_run=False)
        except database_errors() as exc:
            log.warning("pruning skipped: the database did not answer", extra={"error": str(exc)})
        else:
            log.info("pruned the database", extra=report_json(pruned))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PRUNE_EVERY_SECONDS)
