"""The daemon's HTTP side: callbacks, /healthz, /readyz, /metrics and the read-only jobs API.

Who may ask what (`Access`, `access_middleware`): /healthz, /readyz and the callbacks (whose
secret is their key) are open; /metrics is open unless configured to need the token;
everything else (/api, the pages) answers only to a `Host` this daemon is known by, so that
a DNS-rebinding page cannot read it, and, when a token is in force, only with
`Authorization: Bearer <token>`. A token is in force when ORCH_UI_TOKEN is set, and always
when the daemon listens beyond loopback (one is made up and printed at start if none is set).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.config import Settings
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
        self.logger.debug(
            "request",
            extra={
                "method": request.method,
                "path": path,
                "status": response.status,
                "ms": round(time * 1000, 1),
            },
        )


LOOPBACK_NAMES = frozenset({"localhost", "localhost.", "127.0.0.1", "::1"})
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
"""Probes: answered to anyone, whatever the Host (orchestrators probe by IP or by service name)."""


def is_loopback(host: str) -> bool:
    """Whether a listen host is reachable from this machine only."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str | None:
    """The name in a Host header ("[::1]:8750" -> "::1"), lower case; None if malformed."""
    try:
        name = urlsplit(f"//{header}").hostname
    except ValueError:
        return None
    return name.lower() if name else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Access:
    """The names the daemon answers /api to, and the token it needs there (None: none)."""

    names: frozenset[str]
    token: str | None
    metrics_need_token: bool = False

    @classmethod
    def for_daemon(cls, settings: Settings, listen_host: str) -> Access:
        """The access rules for a daemon listening on `listen_host`; prints a made-up token."""
        token = settings.token()
        if token is None and not is_loopback(listen_host):
            token = secrets.token_urlsafe(32)
            # Once, on stderr, not in the JSON log: whoever started the daemon needs it.
            sys.stderr.write(
                f"the daemon listens beyond loopback ({listen_host}): /api needs the header "
                f"'Authorization: Bearer {token}' (set ORCH_UI_TOKEN to choose the token)\n"
            )
            sys.stderr.flush()
        public = _host_name(urlsplit(settings.public_url).netloc) if settings.public_url else None
        extra = (name.strip() for name in settings.allowed_hosts.split(","))
        return cls(
            names=_names([*LOOPBACK_NAMES, listen_host, public or "", *extra]),
            token=token,
            metrics_need_token=settings.metrics_need_token,
        )

    def host_allowed(self, header: str | None) -> bool:
        """Whether a Host header names this daemon.

        An IP address always does: a rebinding page is served under a name, never an address.
        """
        if header is None:
            return True  # HTTP/1.0 tools; browsers always send a Host
        name = _host_name(header)
        return name is not None and (name in self.names or _is_ip(name))

    def token_given(self, authorization: str | None) -> bool:
        """Whether the Authorization header carries the token (compared in constant time)."""
        if self.token is None:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(
            given.strip().encode(), self.token.encode()
        )


def _names(names: Iterable[str]) -> frozenset[str]:
    return frozenset(n.lower().strip("[]") for n in names if n)


def access_middleware(access: Access) -> Middleware:
    """A middleware enforcing `access` before any handler runs."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or path.startswith("/callbacks/"):
            return await handler(request)
        if path == "/metrics" and not access.metrics_need_token:
            return await handler(request)
        if not access.host_allowed(request.headers.get("Host")):
            return web.json_response(
                {"error": "this daemon is not known by that name; add it to ORCH_ALLOWED_HOSTS"},
                status=403,
            )
        if not access.token_given(request.headers.get("Authorization")):
            return web.json_response(
                {
                    "error": "send the daemon's token as 'Authorization: Bearer <token>' "
                    "(ORCH_UI_TOKEN)"
                },
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="orchestrator"'},
            )
        return await handler(request)

    return check


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
            {"ready": readiness.ready, "database": readiness.database, "schema": readiness.schema},
            status=200 if readiness.ready else 503,
        )

    async def metrics(self, _request: web.Request) -> web.Response:
        """Prometheus metrics; job counts are read from the database now, when it answers."""
        try:
            self._metrics.set_job_counts(await jobs_by_state(self._store))
        except DATABASE_ERRORS:
            log.warning("metrics: job counts unavailable, the database does not answer")
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

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


def build_app(*, operations: Operations, receiver: Receiver, access: Access) -> web.Application:
    """The application served on --listen."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[access_middleware(access)])
    app.router.add_get("/healthz", operations.healthz)
    app.router.add_get("/readyz", operations.readyz)
    app.router.add_get("/metrics", operations.metrics)
    app.router.add_get("/api/jobs", operations.list_jobs)
    app.router.add_get("/api/jobs/{job_id}", operations.job)
    app.router.add_post("/callbacks/{secret}", receiver.handle)
    return app
