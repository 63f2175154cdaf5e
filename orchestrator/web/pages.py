"""The studio's web page: the jobs, one job's story, and the review before delivery.

Server-rendered (aiohttp-jinja2, every value escaped by the templates' autoescape), with a
little plain JavaScript for the live jobs table and the confirmations. It reads through the
same views as `status --json` and `/api/jobs` (service/jobs.py, service/review.py) and acts
through the same calls as the CLI's `retry`, `cancel` and `approve`. Who may see and post is
decided before any handler runs, by service/http.py's guard.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from markupsafe import Markup

from orchestrator.config import Settings
from orchestrator.display import visible
from orchestrator.errors import OperatorRefusal
from orchestrator.integrations.previews import cache_folder
from orchestrator.service import job_pages
from orchestrator.service import jobs as job_views
from orchestrator.service.http import CSRF_FIELD, Access, LoginPage, log_in, log_out
from orchestrator.service.thumbnails import Thumbnails
from orchestrator.spec import JobSpec
from orchestrator.store.queries import Store
from orchestrator.store.scheduling import database_errors
from orchestrator.store.shoots import get_shoot
from orchestrator.web.deliveries import PageDeliveries
from orchestrator.web.files import open_output
from orchestrator.web.people_page import PeoplePage
from orchestrator.web.review_pages import ReviewPages
from orchestrator.web.shoot_page import ShootPage

STATIC = Path(__file__).parent / "static"

PAGE_READS_AT_ONCE = 4
"""Page views reading the database at once; the others wait their turn. A crowd on one big
job's page then holds at most this many database connections, and the jobs the same process
drives keep theirs."""

T = TypeVar("T")


def _bytes(value: float | None) -> str:
    if value is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(value) < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return ""


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def _when(value: Any) -> Markup:
    """A moment as `<time>`: UTC in its text (what a page without scripts shows), ISO 8601 in
    its `datetime`, which the script turns into the reader's local time and zone."""
    if not value:
        return Markup("")
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{} UTC</time>').format(
        moment.isoformat(timespec="seconds"), moment.strftime("%Y-%m-%d %H:%M:%S")
    )


def environment(app: web.Application) -> jinja2.Environment:
    """The templates' environment: autoescape always on, undefined names an error."""
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("orchestrator.web", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )
    # `visible`: control characters (terminal escapes, bidi overrides) spelled out, then escaped.
    env.filters.update(visible=visible, bytes=_bytes, duration=_duration, when=_when)
    return env


class Pages:
    """The handlers of the pages and of the actions posted from them."""

    def __init__(self, store: Store, access: Access, settings: Settings | None = None) -> None:
        self._store = store
        self._access = access
        self._settings = settings
        """The process's settings (imgix, exiftool, the people index); None where the pages
        only show."""
        self._deliveries = PageDeliveries(store, settings)
        self._reads = asyncio.Semaphore(PAGE_READS_AT_ONCE)
        self._reading: dict[Hashable, asyncio.Future[Any]] = {}
        thumbnails = Thumbnails(cache_folder(store.engine.url), open_output)
        self._review = ReviewPages(store, thumbnails, self._render)

    def mount(self, app: web.Application) -> LoginPage:
        """Add the pages' routes to `app`; the login page for the guard."""
        templates = environment(app)
        # Compiled at the start (about 0.1 s), not while the first visitor of each page waits.
        for name in templates.list_templates(extensions=["html"]):
            templates.get_template(name)
        app.middlewares.append(unavailable)
        app.router.add_get("/", self.jobs)
        app.router.add_get("/jobs/rows", self.job_rows)
        app.router.add_get("/jobs/{job}", self.job)
        app.router.add_post("/jobs/{job}/retry", self.retry)
        app.router.add_post("/jobs/{job}/cancel", self.cancel)
        app.router.add_post("/jobs/{job}/deliver", self.deliver)
        self._review.mount(app)
        app.router.add_get("/login", self.login_form)
        app.router.add_post("/login", self.login)
        app.router.add_post("/logout", self.logout)
        app.router.add_static("/static/", STATIC, follow_symlinks=False, show_index=False)
        PeoplePage(self._store, self._render, self._settings).mount(app)
        ShootPage(self._store, self._render, self._settings, self._deliveries).mount(app)
        return self.login_required

    def _render(
        self, name: str, request: web.Request, status: int = 200, **context: Any
    ) -> web.Response:
        context.setdefault("error", None)
        context.update(
            csrf=request["csrf"],
            csrf_field=CSRF_FIELD,
            logged_in=self._access.token is not None,
        )
        return aiohttp_jinja2.render_template(name, request, context, status=status)

    async def _read(self, key: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """`read()`, once for every view asking for the same `key` while it runs (a crowd on
        one page costs one read), with at most `PAGE_READS_AT_ONCE` reads at once."""
        running = self._reading.get(key)
        if running is None:

            async def bounded() -> T:
                async with self._reads:
                    return await read()

            running = asyncio.ensure_future(bounded())
            self._reading[key] = running
            running.add_done_callback(lambda done: self._read_done(key, done))
        # Shielded: a viewer who leaves does not cancel the read the others wait for.
        found: T = await asyncio.shield(running)
        return found

    def _read_done(self, key: Hashable, done: asyncio.Future[Any]) -> None:
        if self._reading.get(key) is done:
            del self._reading[key]
        if not done.cancelled():
            done.exception()  # retrieved: every viewer who waited got it raised already

    # ---- the pages -------------------------------------------------------------------

    async def jobs(self, request: web.Request) -> web.Response:
        """The jobs list: live jobs and the newest finished ones (or a page of all jobs or of
        one state); each row's state, current stage's progress, last error, last moved."""
        show, cursor = request.query.get("show", ""), request.query.get("before")
        listing = await self._read(
            ("list", show, cursor),
            lambda: job_pages.job_list(self._store, show=show, cursor=cursor),
        )
        rows = self._job_rows(request, listing.rows)
        here = {key: value for key, value in (("show", show), ("before", cursor)) if value}
        return self._render(
            "jobs.html",
            request,
            listing=listing,
            rows=[html for _, html in rows],
            stamp=RowsStamp.of(rows).encode(),
            refresh="/jobs/rows" + (f"?{urlencode(here)}" if here else ""),
            show=show,
            filters=job_pages.LIST_FILTERS,
            older=f"/?{urlencode({'show': show or 'all', 'before': listing.next})}"
            if listing.next
            else None,
            paged=bool(cursor),
        )

    async def job_rows(self, request: web.Request) -> web.Response:
        """What changed in the jobs list since the page's `since` stamp, which the page's
        script asks for every few seconds: JSON with the rows that changed (rendered by the
        page's own template), the rows' order when it changed, and the new stamp; 204 when
        nothing changed."""
        show, cursor = request.query.get("show", ""), request.query.get("before")
        listing = await self._read(
            ("rows", show, cursor),
            lambda: job_pages.job_list(self._store, show=show, cursor=cursor, counted=False),
        )
        rows = self._job_rows(request, listing.rows)
        now, known = RowsStamp.of(rows), RowsStamp.decode(request.query.get("since", ""))
        changed = {job_id: html for job_id, html in rows if _signature(html) not in known.rows}
        order = [job_id for job_id, _ in rows] if now.order != known.order else None
        if not changed and order is None:
            return web.Response(status=204)
        return web.json_response({"stamp": now.encode(), "order": order, "rows": changed})

    def _job_rows(
        self, request: web.Request, rows: Sequence[job_pages.JobOverview]
    ) -> list[tuple[str, str]]:
        """Each row of the jobs list as (job id, its HTML)."""
        context = {"csrf": request["csrf"], "csrf_field": CSRF_FIELD}
        return [
            (
                str(row.summary["id"]),
                aiohttp_jinja2.render_string("job_row.html", request, {**context, "row": row}),
            )
            for row in rows
        ]

    async def job(
        self, request: web.Request, *, refusal: OperatorRefusal | None = None
    ) -> web.Response:
        """One job: its stages as a timeline, its history, its photos' counts per phase and a
        page of its photos (failed first); with the `refusal` an action met, if any."""
        ref, show, after = (
            request.match_info["job"],
            request.query.get("photos"),
            request.query.get("after", ""),
        )
        page = await self._read(
            ("job", ref, show, after),
            lambda: job_pages.job_page(
                self._store, ref, show=show, after=int(after) if after.isdigit() else None
            ),
        )
        job = page.job
        spec = JobSpec.from_stored(job.options)
        shoot = await get_shoot(self._store, job.shoot_id)
        return self._render(
            "job.html",
            request,
            status=refusal.http_status if refusal else 200,
            job=job,
            page=page,
            folders={"edit": job.edited_dir, "export": job.exported_dir},
            delivers=self._deliveries.can_deliver() and spec.deliver is not None,
            groups_people=spec.tag is not None and spec.tag.people,
            shoot_name=shoot.name,
            paged=bool(after),
            error=str(refusal) if refusal else None,
        )

    # ---- actions (each as the CLI's command does it) -----------------------------------

    async def retry(self, request: web.Request) -> web.StreamResponse:
        """`orchestrator retry JOB --reset-only`: a daemon (or `run`) continues the job."""
        return await self._act(request, job_views.retry(self._store, request.match_info["job"]))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """`orchestrator cancel JOB`."""
        return await self._act(request, job_views.cancel(self._store, request.match_info["job"]))

    async def deliver(self, request: web.Request) -> web.StreamResponse:
        """`orchestrator deliver JOB`, started in the background: the job page shows its
        history line when it is done (uploads can take minutes, a request must not)."""
        job = await self._store.resolve_job(request.match_info["job"])
        return await self._act(request, self._deliveries.start(job.id))

    async def _act(self, request: web.Request, action: Any) -> web.StreamResponse:
        """Do `action`; on success back to the job's page (303), on a refusal that page with
        why."""
        try:
            await action
        except OperatorRefusal as refusal:
            return await self.job(request, refusal=refusal)
        # Reads begun before the action are not shared with the page that shows its outcome.
        self._reading.clear()
        job = await self._store.resolve_job(request.match_info["job"])
        raise web.HTTPSeeOther(f"/jobs/{quote(job.id)}")

    # ---- login -------------------------------------------------------------------------

    async def login_required(self, request: web.Request) -> web.StreamResponse:
        """What a page answers without the token: 401 and the login form."""
        return self._render("login.html", request, status=401, next=request.path_qs, error=None)

    async def login_form(self, request: web.Request) -> web.Response:
        """The login form (a page reached without the token shows it too)."""
        return self._render(
            "login.html", request, next=_local(request.query.get("next")), error=None
        )

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Check the token; on success a session cookie and back where the user was going."""
        form = await request.post()
        token, target = form.get("token"), _local(form.get("next"))
        if self._access.token is None:
            raise web.HTTPSeeOther(target)  # nothing to log in to: no token is in force
        if not isinstance(token, str) or not self._access.token_matches(token):
            return self._render(
                "login.html", request, status=401, next=target, error="that is not the token"
            )
        redirect = web.HTTPSeeOther(target)
        log_in(redirect, self._access)
        raise redirect

    async def logout(self, _request: web.Request) -> web.StreamResponse:
        """End the session."""
        redirect = web.HTTPSeeOther("/login")
        log_out(redirect)
        raise redirect


STAMP_ORDER_BYTES = 8
STAMP_ROW_BYTES = 4


def _signature(html: str) -> bytes:
    """A row's signature: the first bytes of its HTML's SHA-256 (the HTML names the job)."""
    return hashlib.sha256(html.encode()).digest()[:STAMP_ROW_BYTES]


@dataclass(frozen=True)
class RowsStamp:
    """What a jobs list showed, in a few bytes per row: the digest of its rows' order and each
    row's signature. The page hands it back with its next look (`/jobs/rows?since=`), and is
    sent only the rows whose signature it does not hold: no state on the server, so any
    process serving the page answers it."""

    order: bytes
    rows: frozenset[bytes]

    @classmethod
    def of(cls, rows: Sequence[tuple[str, str]]) -> RowsStamp:
        """The stamp of these (job id, HTML) rows."""
        order = hashlib.sha256("\n".join(job_id for job_id, _ in rows).encode()).digest()
        return cls(order[:STAMP_ORDER_BYTES], frozenset(_signature(html) for _, html in rows))

    def encode(self) -> str:
        """The stamp as URL-safe text."""
        raw = self.order + b"".join(sorted(self.rows))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> RowsStamp:
        """The stamp `encode` made; anything else is the stamp of nothing (all rows sent)."""
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            raw = b""
        order, rest = raw[:STAMP_ORDER_BYTES], raw[STAMP_ORDER_BYTES:]
        if len(order) < STAMP_ORDER_BYTES or len(rest) % STAMP_ROW_BYTES:
            return cls(b"", frozenset())
        step = STAMP_ROW_BYTES
        return cls(order, frozenset(rest[i : i + step] for i in range(0, len(rest), step)))


def _local(target: object) -> str:
    """A path on this site to go back to; anything else (another site, `//host`) is `/`."""
    if isinstance(target, str) and target.startswith("/") and not target.startswith(("//", "/\\")):
        return target
    return "/"


def pages_for(store: Store, settings: Settings | None = None) -> Any:
    """The `pages` argument of `build_app`: mounts the pages over `store` (delivering with
    `settings` when given)."""

    def mount(app: web.Application, access: Access) -> LoginPage:
        return Pages(store, access, settings).mount(app)

    return mount


@web.middleware
async def unavailable(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A middleware: a database that does not answer is a 503 page, not a traceback."""
    try:
        result: web.StreamResponse = await handler(request)
    except OperatorRefusal as exc:
        return web.Response(text=str(exc), status=exc.http_status)
    except database_errors():
        raise web.HTTPServiceUnavailable(
            text="the job database does not answer; try again"
        ) from None
    return result
