"""Keeping the job database small over a season: `orchestrator prune` and the daemon's own
pruning, the same call."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from orchestrator.config import Settings
from orchestrator.service.database import open_store
from orchestrator.store.prune import PruneReport, prune


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
    return {
        "cutoff": report.cutoff.isoformat(),
        "dry_run": report.dry_run,
        "jobs": report.jobs,
        "photos": report.photos,
        "events": report.events,
        "callbacks": report.callbacks,
        "bytes_before": report.bytes_before,
        "bytes_after": report.bytes_after,
    }
