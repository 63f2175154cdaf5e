"""The daemon's HTTP side: callbacks, /healthz, /readyz, /metrics and the read-only jobs API."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.service import jobs as job_views
from orchestrator.service.health import DatabaseHealth
from orchestrator.service.metrics import Metrics
from orchestrator.service.receiver import MAX_BODY_BYTES, Receiver
from orchestrator.store.queries import JobNotFound, Store
from orchestrator.store.scheduling import DATABASE_ERRORS, jobs_by_state

log = logging.getLogger("orchestrator.http")


class RedactingAccessLogger(AbstractAccessLogger):
    """Access lines without the callback secret, which is in the path."""

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        path = "/callbacks/<secret>" if request.path.startswith("/callbacks/") else request.path
        self.logger.debug("request", extra={"method": request.method, "path": path,
                                            "status": response.status,
                                            "ms": round(time * 1000, 1)})


class Operations:
    """The handlers that let operators and orchestration look inside."""

    def __init__(self, *, store: Store, health: DatabaseHealth, metrics: Metrics) -> None:
        self._store = store
        self._health = health
        self._metrics = metrics

    async def healthz(self, _request: web.Request) -> web.Response:
        """Alive: the process answers (the database may still be down)."""
        return web.json_response({"status": "alive"})

    async def readyz(self, _request: web.Request) -> web.Response:
        """Ready: the database answers and its schema is the one this daemon knows."""
        readiness = await self._health.check()
        return web.json_response(
            {"ready": readiness.ready, "database": readiness.database,
             "schema": readiness.schema}, status=200 if readiness.ready else 503)

    async def metrics(self, _request: web.Request) -> web.Response:
        """Prometheus metrics; job counts are read from the database now, when it answers."""
        try:
            self._metrics.set_job_counts(await jobs_by_state(self._store))
        except DATABASE_ERRORS:
            log.warning("metrics: job counts unavailable, the database does not answer")
        return web.Response(body=self._metrics.render(),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def list_jobs(self, _request: web.Request) -> web.Response:
        """Every job as `orchestrator status --json` shows it."""
        try:
            found = await job_views.status(self._store)
        except DATABASE_ERRORS:
            return web.json_response({"error": "database unavailable"}, status=503)
        return web.json_response(found)

    async def job(self, request: web.Request) -> web.Response:
        """One job (id or prefix) and its history, as `orchestrator history --json` shows it."""
        try:
            job, events = await job_views.history(self._store, request.match_info["job_id"])
            photos = len(await self._store.photos(job.id))
        except JobNotFound as exc:
            return web.json_response({"error": str(exc)}, status=404)
        except DATABASE_ERRORS:
            return web.json_response({"error": "database unavailable"}, status=503)
        return web.json_response({"job": job_views.job_summary(job, photos), "events": events})


def build_app(*, operations: Operations, receiver: Receiver) -> web.Application:
    """The application served on --listen."""
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app.router.add_get("/healthz", operations.healthz)
    app.router.add_get("/readyz", operations.readyz)
    app.router.add_get("/metrics", operations.metrics)
    app.router.add_get("/api/jobs", operations.list_jobs)
    app.router.add_get("/api/jobs/{job_id}", operations.job)
    app.router.add_post("/callbacks/{secret}", receiver.handle)
    return app
