"""The people page of a job (`--people`): its persons as Imagga grouped their faces, each with
the photos they are in, and a form to name them once (`orchestrator people JOB GROUP --name`).

Posted like the review's forms (the guard of service/http.py checks the CSRF field first);
the name goes into every photo's files before the page shows it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from orchestrator.config import Settings
from orchestrator.errors import OperatorRefusal
from orchestrator.integrations.keywords import KeywordFiles
from orchestrator.service import people as people_actions
from orchestrator.store.queries import Store

Render = Callable[..., web.Response]
"""The pages' renderer: template name, request, status, context."""


class PeoplePage:
    """The handlers of the people page and of its naming form."""

    def __init__(self, store: Store, render: Render, settings: Settings | None) -> None:
        self._store = store
        self._render = render
        self._settings = settings
        self._exiftool = settings.tagging.exiftool if settings is not None else "exiftool"

    def mount(self, app: web.Application) -> None:
        """Add the page's routes to `app`."""
        app.router.add_get("/jobs/{job}/people", self.page)
        app.router.add_post("/jobs/{job}/people/{group}/name", self.name)

    async def page(
        self, request: web.Request, *, refusal: OperatorRefusal | None = None
    ) -> web.Response:
        """The job's persons, with the photos each is in; the `refusal` a naming met, if any."""
        try:
            job, persons = await people_actions.people(self._store, request.match_info["job"])
        except people_actions.PeopleRefused as exc:
            raise web.HTTPNotFound(text=str(exc)) from None
        context: dict[str, Any] = {"job": job, "persons": persons}
        return self._render(
            "people.html",
            request,
            status=refusal.http_status if refusal else 200,
            error=str(refusal) if refusal else None,
            **context,
        )

    async def name(self, request: web.Request) -> web.StreamResponse:
        """Name a person (a blank name takes it away) in every photo they are in."""
        form = await request.post()
        given = form.get("name")
        text = given.strip() if isinstance(given, str) else ""
        group = request.match_info["group"]
        files = KeywordFiles(self._exiftool)
        try:
            await people_actions.name(
                self._store,
                files,
                request.match_info["job"],
                group,
                text or None,
                settings=self._settings,
            )
        except OperatorRefusal as refusal:
            return await self.page(request, refusal=refusal)
        finally:
            files.close()
        job = await self._store.resolve_job(request.match_info["job"])
        raise web.HTTPSeeOther(f"/jobs/{quote(job.id)}/people#person-{quote(group)}")
