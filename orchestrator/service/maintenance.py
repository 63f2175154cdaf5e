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
from orchestrator.service.database import open_store
from orchestrator.store.prune import PruneReport, prune
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors

PRUNE_EVERY_SECONDS = 24 * 3600.0
"""How often a daemon prunes (with ORCH_PRUNE_AFTER_DAYS), after once at its start."""

log = logging.getLogger(__name__)


async def prune_database(
    settings: Settings, *, older_than_days: float, dry_run: bool = False
) -> PruneReport:
    """Remove finished jobs older than `older_than_days` and spent callbacks (see store.prune)."""
    store = await open_store(settings)
    try:
        return await prune(store, older_than=timedelta(days=older_than_days), dry_run=dry_run)
    finally:
        await store.close()


def report_json(report: PruneReport) -> dict[str, Any]:
    """The report as `prune --json` prints it."""
    return {**dataclasses.asdict(report), "cutoff": report.cutoff.isoformat()}


async def prune_daily(store: Store, older_than_days: float, stop: asyncio.Event) -> None:
    """The daemon's pruning: at start, then every `PRUNE_EVERY_SECONDS` until `stop`. A
    database that does not answer is logged and tried again at the next turn."""
    while not stop.is_set():
        try:
            report = await prune(store, older_than=timedelta(days=older_than_days))
        except database_errors() as exc:
            log.warning("pruning skipped: the database did not answer", extra={"error": str(exc)})
        else:
            log.info("pruned the database", extra=report_json(report))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=PRUNE_EVERY_SECONDS)
