"""The shoot page of a job: the shoot it belongs to (what the photographer named), every job of
that shoot (one per Imagen project: RAW, JPEG, follow-ups), and the shoot's own keywords (the
couple, the venue), edited here as `orchestrator keywords SHOOT --shoot-add/--shoot-remove` does.
It is also the shoot's one review: each job waiting for review links to its grid, and one button
approves every job of the shoot waiting for review, as `orchestrator approve SHOOT` does. Once
its jobs have completed, another delivers the shoot again, as `orchestrator deliver SHOOT` does.

Posted like the review's forms (the guard of service/http.py checks the CSRF field first); the
words go into every edited and exported file of the shoot before the page shows them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import quote

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.errors import OperatorRefusal
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.service.shoot_keywords import edit_shoot_keywords
from orchestrator.service.shoots import approve_shoot
from orchestrator.states import JobState
from orchestrator.store.queries import Store
from orchestrator.store.shoots import get_shoot, jobs_of_shoots
from orchestrator.store.tallies import phase_tallies
from orchestrator.web.deliveries import PageDeliveries
from orchestrator.workflow.tag_details import TAG_PHASE

Render = Callable[..., web.Response]
"""The pages' renderer: template name, request, status, context."""


class ShootPage:
    """The handlers of the shoot page and of its keywords form."""

    def __init__(
        self,
        store: Store,
        render: Render,
        settings: Settings | None,
        deliveries: PageDeliveries,
    ) -> None:
        self._store = store
        self._render = render
        self._deliveries = deliveries
        self._exiftool = settings.tagging.exiftool if settings is not None else "exiftool"

    def mount(self, app: web.Application) -> None:
        """Add the page's routes to `app`."""
        app.router.add_get("/jobs/{job}/shoot", self.page)
        app.router.add_post("/jobs/{job}/shoot/keywords", self.keywords)
        app.router.add_post("/jobs/{job}/shoot/approve", self.approve)
        app.router.add_post("/jobs/{job}/shoot/deliver", self.deliver)

    async def page(
        self, request: web.Request, *, refusal: OperatorRefusal | None = None
    ) -> web.Response:
        """The shoot of the job named, its jobs and its words; the `refusal` an edit met."""
        job = await self._store.resolve_job(request.match_info["job"])
        shoot = await get_shoot(self._store, job.shoot_id)
        jobs = (await jobs_of_shoots(self._store, [shoot.id])).get(shoot.id, [])
        reviewing = {m.id: TAG_PHASE for m, _ in jobs if m.state == JobState.REVIEWING}
        tallied = await phase_tallies(self._store, reviewing, recent_since=datetime.now(UTC))
        return self._render(
            "shoot.html",
            request,
            status=refusal.http_status if refusal else 200,
            error=str(refusal) if refusal else None,
            job=job,
            shoot=shoot,
            jobs=jobs,
            to_decide={job_id: t.done - t.decided for job_id, t in tallied.items()},
            delivers=self._deliveries.can_deliver()
            and any(
                m.state == JobState.COMPLETED and m.options.get("deliver") is not None
                for m, _ in jobs
            ),
        )

    async def keywords(self, request: web.Request) -> web.StreamResponse:
        """Add the words typed (comma separated) and remove the one whose button was pressed,
        in every file of the shoot."""
        form = await request.post()
        typed = form.get("add")
        add = [w.strip() for w in typed.split(",") if w.strip()] if isinstance(typed, str) else []
        dropped = form.get("remove")
        remove = [dropped] if isinstance(dropped, str) and dropped else []
        if not (add or remove):
            raise web.HTTPSeeOther(self._here(request))
        files = KeywordFiles(self._exiftool)
        try:
            await edit_shoot_keywords(
                self._store, files, request.match_info["job"], add=add, remove=remove
            )
        except OperatorRefusal as refusal:
            return await self.page(request, refusal=refusal)
        finally:
            files.close()
        raise web.HTTPSeeOther(self._here(request))

    async def approve(self, request: web.Request) -> web.StreamResponse:
        """Approve every job of the shoot waiting for review (its RAW and JPEG jobs and its
        follow-ups), each as `orchestrator approve JOB` does."""
        return await self._on_shoot(request, lambda shoot_id: approve_shoot(self._store, shoot_id))

    async def deliver(self, request: web.Request) -> web.StreamResponse:
        """Deliver again what changed in every completed job of the shoot, in the background,
        as `orchestrator deliver SHOOT` does: each job's history says when it is done."""
        return await self._on_shoot(request, self._deliveries.start)

    async def _on_shoot(
        self, request: web.Request, action: Callable[[str], Awaitable[object]]
    ) -> web.StreamResponse:
        """`action` on the shoot of the job named; back to the page (303), or the page with
        the refusal the action met."""
        job = await self._store.resolve_job(request.match_info["job"])
        try:
            await action(job.shoot_id)
        except OperatorRefusal as refusal:
            return await self.page(request, refusal=refusal)
        raise web.HTTPSeeOther(self._here(request))

    @staticmethod
    def _here(request: web.Request) -> str:
        return f"/jobs/{quote(request.match_info['job'])}/shoot"
