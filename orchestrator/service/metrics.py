"""Prometheus metrics of one daemon, and the progress sink that feeds them.

Counters count what this process did; `orchestrator_jobs` is read from the database at scrape
time, so every daemon reports the same, whole picture of the queue.
"""

from __future__ import annotations

import asyncio
import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    disable_created_metrics,
    generate_latest,
)

from orchestrator.workflow.journey import PIPELINE

log = logging.getLogger("orchestrator.daemon")

_NOTE_LEVELS = {"info": logging.INFO, "warn": logging.WARNING, "error": logging.ERROR}


class Metrics:
    """Every metric the daemon exports, in a registry of its own."""

    def __init__(self) -> None:
        # `*_created` series (one per counter and label) only double what a scrape returns.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        r = self.registry
        self.jobs = Gauge(
            "orchestrator_jobs", "Jobs in the database, by state.", ["state"], registry=r
        )
        self.jobs_in_progress = Gauge(
            "orchestrator_jobs_in_progress", "Jobs this daemon is driving right now.", registry=r
        )
        self.tasks = Gauge(
            "orchestrator_asyncio_tasks",
            "Asyncio tasks of this daemon (waiting jobs hold none).",
            registry=r,
        )
        self.tasks.set_function(lambda: len(asyncio.all_tasks()))
        self.transfers = Counter(
            "orchestrator_transfers",
            "Files done, by stage (hash, upload, download_edits, …).",
            ["stage"],
            registry=r,
        )
        self.transfer_bytes = Counter(
            "orchestrator_transfer_bytes", "Bytes read or moved, by stage.", ["stage"], registry=r
        )
        self.retries = Counter(
            "orchestrator_retries",
            "Retried Imagen calls (api) and file transfers (transfer).",
            ["kind"],
            registry=r,
        )
        self.callbacks = Counter(
            "orchestrator_callbacks", "Callbacks received, by outcome.", ["outcome"], registry=r
        )
        self.lease_takeovers = Counter(
            "orchestrator_lease_takeovers", "Expired leases this daemon took over.", registry=r
        )
        self.leases_lost = Counter(
            "orchestrator_leases_lost",
            "Drives stopped because another worker took the lease.",
            registry=r,
        )
        self.drives = Counter(
            "orchestrator_drives",
            "Turns of driving a job, by how they ended.",
            ["outcome"],
            registry=r,
        )
        self.database_up = Gauge(
            "orchestrator_database_up", "1 while the database answers the scheduler.", registry=r
        )

    def set_job_counts(self, counts: dict[str, int]) -> None:
        """Publish the database's job counts (every state, zero included)."""
        for state in sorted(PIPELINE.transitions.states | counts.keys()):
            self.jobs.labels(state).set(counts.get(state, 0))

    def api_retry(self, call: str, attempt: int, reason: str, delay: float) -> None:
        """Count a retried Imagen call (the client's `on_retry` hook)."""
        self.retries.labels("api").inc()
        log.info(
            "retrying an Imagen call",
            extra={"call": call, "attempt": attempt, "reason": reason, "delay": round(delay, 2)},
        )

    def transfer_retry(self, file_name: str, attempt: int, reason: str, delay: float) -> None:
        """Count a retried transfer (the transfers' `on_retry` hook)."""
        self.retries.labels("transfer").inc()
        log.info(
            "retrying a transfer",
            extra={
                "file": file_name,
                "attempt": attempt,
                "reason": reason,
                "delay": round(delay, 2),
            },
        )

    def render(self) -> bytes:
        """The metrics in Prometheus' text format."""
        return generate_latest(self.registry)


class MetricsProgress:
    """The daemon's progress sink: transfers feed the counters, notes become log lines."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        log.info(
            "stage started",
            extra={"job": job, "stage": stage, "files": files, "bytes": total_bytes},
        )

    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        if files > 0:
            self._metrics.transfers.labels(stage).inc(files)
        # A restarted transfer reports the bytes it throws away as negative; a counter only
        # grows, so those are simply not counted.
        if nbytes > 0:
            self._metrics.transfer_bytes.labels(stage).inc(nbytes)

    def stage_finished(self, job: str, stage: str) -> None:
        log.info("stage finished", extra={"job": job, "stage": stage})

    def note(self, job: str, message: str, *, level: str = "info") -> None:
        log.log(_NOTE_LEVELS.get(level, logging.INFO), message, extra={"job": job})

    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        log.debug(
            "waiting for Imagen",
            extra={"job": job, "stage": stage, "percent": percent, "status": status},
        )
