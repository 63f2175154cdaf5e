"""The daemon's HTTP side: callbacks, /healthz, /readyz, /metrics, the jobs API and the pages.

Who may ask what (`Access`, `access_middleware`): /healthz, /readyz and the callbacks (whose
secret is their key) are open; /metrics is open unless configured to need the token;
everything else (/api, the pages) answers only to a `Host` this daemon is known by, so that
a DNS-rebinding page cannot read it, and, when a token is in force, only with
`Authorization: Bearer <token>` or the session cookie the page's login sets. A token is in
force when ORCH_UI_TOKEN is set, and always when the daemon listens beyond loopback (one is
made up and printed at start if none is set).

Every POST but the callbacks must come from this site: a browser's `Sec-Fetch-Site` and
`Origin` must say so, and the form must carry the CSRF field made for the browser's CSRF
cookie (an HMAC no other site can compute). Everything answered carries headers that keep
other sites from framing it and the page to its own scripts and images.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CONTENT_TYPE_LATEST

from orchestrator.config import ConfigError, Settings
from orchestrator.errors import OperatorRefusal
from orchestrator.rules.database import default_database_path
from orchestrator.service import jobs as job_views
from orchestrator.service.health import DatabaseHealth
from orchestrator.service.metrics import Metrics
from orchestrator.service.receiver import MAX_BODY_BYTES, Receiver
from orchestrator.states import JobState
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors, jobs_by_state

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


SESSION_COOKIE = "orch_session"
CSRF_COOKIE = "orch_csrf"
CSRF_FIELD = "csrf"
"""The form field (or `X-CSRF-Token` header) every POST must carry."""
SESSION_SECONDS = 12 * 3600
"""How long a login lasts."""
LOGIN_PATHS = frozenset({"/login"})
"""Reachable without the token: where it is given."""
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}
LoginPage = Callable[[web.Request], Awaitable[web.StreamResponse]]
"""Answers a page request that lacks the token (the login form, status 401)."""

MIN_TOKEN_LENGTH = 32
"""Shortest token accepted: 32 characters of `secrets.token_urlsafe` carry 192 bits."""
MAKE_A_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
LOGIN_FAILURES = 5
"""Wrong tokens one address may give at /login within the throttle window."""
TOKEN_FILE = "ui-token"
"""The file in the data folder a made-up token is written to (mode 0600)."""

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


class LoginThrottle:
    """Wrong tokens counted per client address: after `LOGIN_FAILURES` within `window`
    seconds, that address waits until the oldest leaves the window.

    Kept in this process: each daemon counts the guesses it receives.
    """

    def __init__(self, window: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._window = window
        self._clock = clock
        self._failures: dict[str, list[float]] = {}

    def _recent(self, address: str) -> list[float]:
        since = self._clock() - self._window
        recent = [t for t in self._failures.get(address, []) if t > since]
        if recent:
            self._failures[address] = recent
        else:
            self._failures.pop(address, None)
        return recent

    def wait(self, address: str) -> float:
        """Seconds `address` must wait before its next guess (0: it may guess now)."""
        recent = self._recent(address)
        if len(recent) < LOGIN_FAILURES:
            return 0.0
        return max(recent[-LOGIN_FAILURES] + self._window - self._clock(), 0.0)

    def failed(self, address: str) -> None:
        """Count a wrong token from `address`."""
        if len(self._failures) > 10_000:  # bounded: forget addresses whose window passed
            for known in list(self._failures):
                self._recent(known)
        self._failures.setdefault(address, []).append(self._clock())


class Sessions:
    """The sessions logged out before their time, until they would have expired anyway.

    Kept in this process: on several daemons behind one balancer, a logout revokes the cookie
    on the daemon that received it; the others accept it until it expires.
    """

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}

    def revoke(self, session_id: str, expires: float) -> None:
        """Refuse this session from now on."""
        now = time.time()
        self._revoked = {sid: end for sid, end in self._revoked.items() if end > now}
        self._revoked[session_id] = expires

    def revoked(self, session_id: str) -> bool:
        """Whether the session was logged out."""
        return session_id in self._revoked


def check_token(token: str) -> str:
    """The token, or ConfigError when it is too short to resist guessing (says how to make
    one)."""
    if len(token.strip()) < MIN_TOKEN_LENGTH:
        raise ConfigError(
            f"ORCH_UI_TOKEN is too short to resist guessing ({len(token.strip())} characters; "
            f"at least {MIN_TOKEN_LENGTH}): make one with {MAKE_A_TOKEN}"
        )
    return token.strip()


def _write_made_up_token(token: str) -> Path:
    """The made-up token, written where only this user can read it; the file's path."""
    path = default_database_path().parent / TOKEN_FILE
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)
        file.write(token + "\n")
    return path


@dataclass(frozen=True)
class Access:
    """The names the daemon answers /api and the pages to, and the token they need (None:
    none)."""

    names: frozenset[str]
    token: str | None
    metrics_need_token: bool = False
    secure_cookies: bool = False
    """Mark cookies Secure: the page is reached over https (the public URL says so)."""
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32), repr=False)
    """Signs the session and CSRF cookies; made from the token when there is one, so that a
    login survives a restart and holds on every daemon sharing the token."""
    throttle: LoginThrottle = field(default_factory=lambda: LoginThrottle(300.0))
    """Wrong tokens at /login, per client address."""
    sessions: Sessions = field(default_factory=Sessions)
    """The sessions logged out."""

    @classmethod
    def for_daemon(cls, settings: Settings, listen_host: str, *, what: str = "daemon") -> Access:
        """The access rules for a server listening on `listen_host`; refuses a short token
        (`ConfigError`), writes a made-up one to a private file."""
        token = settings.web.token()
        if token is not None:
            token = check_token(token)
        elif not is_loopback(listen_host):
            token = secrets.token_urlsafe(32)
            # Never in the log (collected, shipped, kept): in a file only this user reads.
            path = _write_made_up_token(token)
            log.warning(
                f"the {what} listens beyond loopback: /api and the page need a token; one was "
                f"made up and written to {path} (set ORCH_UI_TOKEN to choose it)",
                extra={"listen": listen_host, "token_file": str(path)},
            )
        public_url = settings.daemon.public_url
        public = _host_name(urlsplit(public_url).netloc) if public_url else None
        extra = (name.strip() for name in settings.web.allowed_hosts.split(","))
        secure = bool(public_url and public_url.startswith("https://"))
        return cls(
            names=_names([*LOOPBACK_NAMES, listen_host, public or "", *extra]),
            token=token,
            metrics_need_token=settings.web.metrics_need_token,
            secure_cookies=secure,
            throttle=LoginThrottle(settings.web.login_window_seconds),
            secret=(
                hashlib.sha256(f"orchestrator-ui:{token}".encode()).digest()
                if token
                else secrets.token_bytes(32)
            ),
        )

    def _sign(self, purpose: str, value: str) -> str:
        return hmac.new(self.secret, f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()

    def token_matches(self, given: str) -> bool:
        """Whether `given` is the token (compared in constant time); True when none is needed."""
        if self.token is None:
            return True
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def new_session(self, now: float | None = None) -> str:
        """A session cookie value for a browser that just gave the token: when it was issued,
        its own id (so that a logout revokes it alone), signed."""
        issued = f"{int(time.time() if now is None else now)}.{secrets.token_urlsafe(16)}"
        return f"{issued}.{self._sign('session', issued)}"

    def _session(self, value: str | None) -> tuple[int, str] | None:
        """(issued, id) of a session cookie this server signed; None for anything else."""
        issued, sid, signature = [*(value or "").split(".", 2), "", ""][:3]
        if (
            not issued.isdigit()
            or not sid
            or not hmac.compare_digest(
                signature.encode(), self._sign("session", f"{issued}.{sid}").encode()
            )
        ):
            return None
        return int(issued), sid

    def session_valid(self, value: str | None, now: float | None = None) -> bool:
        """Whether a session cookie is one this server made, less than SESSION_SECONDS ago,
        and not logged out."""
        session = self._session(value)
        if session is None:
            return False
        issued, sid = session
        age = (time.time() if now is None else now) - issued
        return 0 <= age < SESSION_SECONDS and not self.sessions.revoked(sid)

    def log_out(self, value: str | None) -> None:
        """Revoke the session a cookie holds (whoever holds a copy of it is logged out too)."""
        session = self._session(value)
        if session is not None:
            issued, sid = session
            self.sessions.revoke(sid, issued + SESSION_SECONDS)

    def csrf_field(self, nonce: str) -> str:
        """The CSRF field value that goes with the browser's CSRF cookie `nonce`."""
        return self._sign("csrf", nonce)

    def authenticated(self, request: web.Request) -> bool:
        """Whether the request carries the token (header) or a valid session (cookie)."""
        if self.token is None or self.token_given(request.headers.get("Authorization")):
            return True
        return self.session_valid(request.cookies.get(SESSION_COOKIE))

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


def _is_page(path: str) -> bool:
    """Whether a path is one of the pages (answered in HTML), not /api or /metrics."""
    return not (path.startswith("/api/") or path == "/api" or path == "/metrics")


def _same_site(request: web.Request) -> bool:
    """Whether what the browser says of the request's origin names this very site.

    Browsers send `Sec-Fetch-Site` and `Origin` with every POST; tools send neither (and are
    then held to the CSRF field alone).
    """
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    host = request.headers.get("Host", "")
    return parts.scheme in ("http", "https") and parts.netloc.lower() == host.lower()


async def csrf_given(request: web.Request, access: Access) -> bool:
    """Whether a POST carries the CSRF field made for its browser's CSRF cookie."""
    nonce = request.cookies.get(CSRF_COOKIE)
    if not nonce:
        return False
    given = request.headers.get("X-CSRF-Token")
    if given is None and request.content_type in (
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    ):
        value = (await request.post()).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    return given is not None and hmac.compare_digest(
        given.encode(), access.csrf_field(nonce).encode()
    )


def access_middleware(access: Access, *, login: LoginPage | None = None) -> Middleware:
    """A middleware enforcing `access` before any handler runs; `login` answers page requests
    that lack the token (without it they get the JSON 401 /api gets)."""

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
        nonce = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request["csrf"] = access.csrf_field(nonce)
        if request.method not in ("GET", "HEAD", "OPTIONS") and not (
            _same_site(request) and await csrf_given(request, access)
        ):
            return _refused(
                request,
                403,
                "refused: this request did not come from the page itself (cross-site, or "
                "the page is old); reload the page and try again",
            )
        if path in LOGIN_PATHS and request.method == "POST":
            return await _guarded_login(request, handler, access)
        authenticated = access.authenticated(request)
        if authenticated and path == "/logout" and request.method == "POST":
            access.log_out(request.cookies.get(SESSION_COOKIE))
        if not authenticated and path not in LOGIN_PATHS:
            if login is not None and _is_page(path):
                response = await login(request)
            else:
                response = web.json_response(
                    {
                        "error": "send the daemon's token as 'Authorization: Bearer <token>' "
                        "(ORCH_UI_TOKEN)"
                    },
                    status=401,
                    headers={"WWW-Authenticate": 'Bearer realm="orchestrator"'},
                )
        else:
            response = await handler(request)
        if CSRF_COOKIE not in request.cookies and _is_page(path):
            _set_cookie(response, access, CSRF_COOKIE, nonce, max_age=None)
        return response

    return check


async def _guarded_login(
    request: web.Request, handler: Handler, access: Access
) -> web.StreamResponse:
    """A token given at /login, unless its address guessed wrong too often (429)."""
    address = request.remote or "unknown"
    wait = access.throttle.wait(address)
    if wait > 0:
        seconds = max(1, round(wait + 0.5))
        log.warning("login throttled", extra={"client": address, "retry_in": seconds})
        return web.Response(
            text=f"too many wrong tokens from your address: try again in {seconds} s",
            status=429,
            content_type="text/plain",
            headers={"Retry-After": str(seconds)},
        )
    response = await handler(request)  # a good token raises its redirect
    if response.status == 401:
        access.throttle.failed(address)
        log.warning("wrong token at /login", extra={"client": address})
    return response


def _refused(request: web.Request, status: int, message: str) -> web.Response:
    if _is_page(request.path):
        return web.Response(text=message, status=status, content_type="text/plain")
    return web.json_response({"error": message}, status=status)


def _set_cookie(
    response: web.StreamResponse, access: Access, name: str, value: str, *, max_age: int | None
) -> None:
    """A cookie scripts cannot read and other sites never send back."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=access.secure_cookies,
    )


def log_in(response: web.StreamResponse, access: Access) -> None:
    """Give the browser a session (it gave the token)."""
    _set_cookie(response, access, SESSION_COOKIE, access.new_session(), max_age=SESSION_SECONDS)


def log_out(response: web.StreamResponse) -> None:
    """End the browser's session."""
    response.del_cookie(SESSION_COOKIE, path="/")


async def security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """Headers every answer carries (an `on_response_prepare` signal handler)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


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
        except database_errors():
            log.warning("metrics: job counts unavailable, the database does not answer")
        return web.Response(
            body=self._metrics.render(), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def list_jobs(self, request: web.Request) -> web.Response:
        """A page of jobs, newest first, each as `orchestrator status --json` shows it:
        `{"jobs": [...], "next": CURSOR or null}`; takes `limit`, `cursor` and `state`."""
        query = request.query
        state = query.get("state")
        if state is not None and state not in {s.value for s in JobState}:
            return web.json_response({"error": f"no state {state!r}"}, status=400)
        try:
            limit = int(query.get("limit", job_views.API_PAGE))
        except ValueError:
            return web.json_response({"error": "limit is a number of jobs"}, status=400)
        try:
            found = await job_views.jobs_page(
                self._store, state=state, limit=limit, cursor=query.get("cursor")
            )
        except OperatorRefusal as exc:
            return web.json_response({"error": str(exc)}, status=exc.http_status)
        except database_errors():
            return web.json_response({"error": "database unavailable"}, status=503)
        return web.json_response(found)

    async def job(self, request: web.Request) -> web.Response:
        """One job (id or prefix) and its history, as `orchestrator history --json` shows it:
        grouped counts of its photos (never their rows), whatever its size."""
        try:
            view, events = await job_views.history_view(self._store, request.match_info["job_id"])
        except OperatorRefusal as exc:
            return web.json_response({"error": str(exc)}, status=exc.http_status)
        except database_errors():
            return web.json_response({"error": "database unavailable"}, status=503)
        return web.json_response({"job": view.model_dump(mode="json"), "events": events})


def build_app(
    *,
    operations: Operations,
    receiver: Receiver | None,
    access: Access,
    pages: Callable[[web.Application, Access], LoginPage] | None = None,
) -> web.Application:
    """The application served on --listen: the daemon's (with `receiver`) or `ui`'s.

    `pages` mounts the web page on the application and returns its login page.
    """
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    login = pages(app, access) if pages is not None else None
    app.middlewares.append(access_middleware(access, login=login))
    app.on_response_prepare.append(security_headers)
    app.router.add_get("/healthz", operations.healthz)
    app.router.add_get("/readyz", operations.readyz)
    app.router.add_get("/metrics", operations.metrics)
    app.router.add_get("/api/jobs", operations.list_jobs)
    app.router.add_get("/api/jobs/{job_id}", operations.job)
    if receiver is not None:
        app.router.add_post("/callbacks/{secret}", receiver.handle)
    return app
