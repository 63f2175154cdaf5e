"""The review page: a grid of a job's photos to cull at speed, a loupe, and their actions.

Without scripts it is a paged grid of thumbnails with forms: a photo opens in the loupe by its
link (`?photo=`), each action posts a form and comes back (303) to the same place (filter, page,
photo). With scripts (static/review.js) the same page becomes a grid over the whole list (the
`index` JSON, a few tens of bytes a photo) of which only the rows on screen exist, a loupe over
it, the keys, a selection and bulk actions; every action then asks for a small JSON answer and
changes the photos in place, and a poll (`changes`) shows what another reviewer did.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from aiohttp import web

from orchestrator.errors import OperatorRefusal
from orchestrator.integrations.previews import ThumbnailFailed
from orchestrator.service import review as review_actions
from orchestrator.service import review_grid
from orchestrator.service.review_grid import ReviewFilter, loupe, short_entry
from orchestrator.service.thumbnails import Thumbnails
from orchestrator.store.queries import Store
from orchestrator.web.files import NotServed, read_output
from orchestrator.workflow.review_previews import PhotoJpeg, review_jpeg
from orchestrator.workflow.tag_details import TagDetails

log = logging.getLogger("orchestrator.web")

Render = Callable[..., web.Response]
"""The pages' `_render(name, request, status=…, **context)`."""
BACK_KEYS = ("show", "keyword", "category", "page", "photo")
"""What of a review page's address an action comes back to."""
FEW = 8
"""Changed photos an answer reads one by one; more are read with the job's photos at once."""
Done = tuple[list[int], list[str]]
"""What an action did: the photos it changed, and what it skipped (with why)."""
THUMB_CACHE = "private, max-age=31536000, immutable"
"""A thumbnail's address names its version: the browser may keep it for good."""


def wants_json(request: web.Request) -> bool:
    """Whether the page's script asked (it says `Accept: application/json`)."""
    return request.headers.get("Accept", "").startswith("application/json")


def back_query(value: object) -> str:
    """The review page's query to come back to, from a form's `back` field: only the keys
    the page knows, each as text (nothing else of what was posted goes into the address)."""
    if not isinstance(value, str):
        return ""
    pairs = [(k, v) for k, v in parse_qsl(value.lstrip("?")) if k in BACK_KEYS]
    return urlencode(pairs)


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


class ReviewPages:
    """The review's handlers."""

    def __init__(self, store: Store, thumbnails: Thumbnails, render: Render) -> None:
        self._store = store
        self._thumbnails = thumbnails
        self._grids = review_grid.ReviewGrids(store, thumbnails)
        self._render = render

    def mount(self, app: web.Application) -> None:
        """Add the review's routes to `app`."""
        app.router.add_get("/jobs/{job}/review", self.review)
        app.router.add_get("/jobs/{job}/review/index", self.index)
        app.router.add_get("/jobs/{job}/review/changes", self.changes)
        app.router.add_get("/jobs/{job}/review/photos/{photo}", self.photo)
        app.router.add_get("/jobs/{job}/photos/{photo}/image", self.image)
        app.router.add_get("/jobs/{job}/photos/{photo}/thumb", self.thumb)
        app.router.add_post("/jobs/{job}/approve", self.approve)
        app.router.add_post("/jobs/{job}/photos/{photo}/keywords", self.keywords)
        app.router.add_post("/jobs/{job}/review/bulk", self.bulk)

    # ---- reads -------------------------------------------------------------------------

    async def review(
        self, request: web.Request, *, refusal: OperatorRefusal | None = None
    ) -> web.Response:
        """The grid (one page of it), its filters and counts, and the loupe of `?photo=`."""
        wanted = ReviewFilter.of(request.query)
        grid = await self._grids.grid(request.match_info["job"], wanted)
        current_id = _int(request.query.get("photo"))
        current = next((p for p in grid.photos if p.id == current_id), None)
        number = _int(request.query.get("page"))
        if number is None:
            number = (grid.page_of(current.id) if current else None) or 0
        number = min(number, grid.pages - 1)
        shown = grid.page(number)
        here = wanted.query(page=number) if number else wanted.query()
        neighbours = _neighbours(grid.shown, current.id) if current else (None, None)
        return self._render(
            "review.html",
            request,
            status=refusal.http_status if refusal else 200,
            job=grid.job,
            grid=grid,
            filter=wanted,
            shows=grid.shows,
            sections=grid.sections(shown),
            number=number,
            here=urlencode({**here, **({"photo": current.id} if current else {})}),
            link=lambda **more: "?" + urlencode(wanted.query(**more)),
            filter_link=lambda **values: (
                "?" + urlencode(ReviewFilter(**{**wanted.__dict__, **values}).query())
            ),
            current=current,
            grid_page=review_grid.GRID_PAGE,
            detail=loupe(grid.job, current.review) if current else None,
            previous=neighbours[0],
            following=neighbours[1],
            index_url=f"/jobs/{quote(grid.job.id)}/review/index?{urlencode(wanted.query())}",
            error=str(refusal) if refusal else None,
        )

    async def index(self, request: web.Request) -> web.Response:
        """The whole filtered list for the page's script, compressed."""
        wanted = ReviewFilter.of(request.query)
        grid = await self._grids.grid(request.match_info["job"], wanted)
        response = web.json_response(
            {**grid.index(), "counts": grid.counts, "open": grid.open},
            headers={"Cache-Control": "no-store"},
        )
        response.enable_compression()
        return response

    async def changes(self, request: web.Request) -> web.Response:
        """What was written to the review since the page's stamp (another reviewer's work)."""
        found = await review_grid.changes(
            self._store, request.match_info["job"], request.query.get("since", "")
        )
        return web.json_response(found, headers={"Cache-Control": "no-store"})

    async def photo(self, request: web.Request) -> web.Response:
        """One photo as the loupe shows it (JSON)."""
        job = await self._store.resolve_job(request.match_info["job"])
        wanted = _int(request.match_info["photo"])
        record = await self._store.photo(job.id, wanted) if wanted is not None else None
        details = TagDetails.of(record) if record else None
        if record is None or details is None:
            raise web.HTTPNotFound(text="this job has no such tagged photo")
        review = review_actions.photo_review(record, details)
        return web.json_response(loupe(job, review), headers={"Cache-Control": "no-store"})

    async def image(self, request: web.Request) -> web.Response:
        """A photo's exported (or edited) JPEG, read only from that job's output folder."""
        job, jpeg = await self._jpeg(request)
        try:
            body = await asyncio.to_thread(read_output, jpeg[2], jpeg[3])
        except NotServed as exc:
            log.warning("image not served", extra={"job_id": job, "why": str(exc)})
            raise web.HTTPNotFound(text="this photo's JPEG cannot be shown") from None
        return web.Response(
            body=body, content_type="image/jpeg", headers={"Cache-Control": "private, max-age=60"}
        )

    async def thumb(self, request: web.Request) -> web.StreamResponse:
        """A photo's thumbnail, made once and kept; the browser keeps it for good when its
        address names the current version (`?v=`)."""
        asked, photo = request.query.get("v", ""), _int(request.match_info["photo"])
        if asked and photo is not None:
            kept = await self._thumbnails.kept(request.match_info["job"], photo, asked)
            if kept is not None:  # made from this very version: no need to ask the database
                return _thumb_response(kept, asked, fresh=True)
        job, jpeg = await self._jpeg(request)
        version = jpeg[1]
        if request.headers.get("If-None-Match") == f'"{version}"':
            return web.Response(status=304, headers={"ETag": f'"{version}"'})
        try:
            body = await self._thumbnails.thumbnail(job, jpeg)
        except (NotServed, ThumbnailFailed) as exc:
            log.warning("thumbnail not served", extra={"job_id": job, "why": str(exc)})
            raise web.HTTPNotFound(text="this photo's JPEG cannot be shown") from None
        return _thumb_response(body, version, fresh=asked == version)

    async def _jpeg(self, request: web.Request) -> tuple[str, PhotoJpeg]:
        job = await self._store.resolve_job(request.match_info["job"])
        wanted = _int(request.match_info["photo"])
        record = await self._store.photo(job.id, wanted) if wanted is not None else None
        jpeg = review_jpeg(job, record) if record else None
        if jpeg is None:
            raise web.HTTPNotFound(text="this photo has no JPEG to show")
        return job.id, jpeg

    # ---- actions -----------------------------------------------------------------------

    async def approve(self, request: web.Request) -> web.StreamResponse:
        """`orchestrator approve JOB [PHOTO…]` (photos by id here)."""
        form = await request.post()
        photos = [n for v in form.getall("photo", []) if (n := _int(v)) is not None]
        job = request.match_info["job"]

        async def act() -> Done:
            await review_actions.approve(self._store, job, photos)
            return photos, []

        return await self._act(request, act(), form.get("back"))

    async def keywords(self, request: web.Request) -> web.StreamResponse:
        """Remove a keyword of a photo, or add one of its suggestions."""
        form = await request.post()
        words = {
            key: [v for v in form.getall(key, []) if isinstance(v, str)]
            for key in ("add", "remove")
        }
        photo = request.match_info["photo"]

        async def act() -> Done:
            done = await review_actions.edit_keywords(
                self._store,
                request.match_info["job"],
                int(photo) if photo.isdigit() else photo,
                add=[w for w in words["add"] if w.strip()],
                remove=words["remove"],
            )
            return [done.id], []

        return await self._act(request, act(), form.get("back"))

    async def bulk(self, request: web.Request) -> web.StreamResponse:
        """An action on the selected photos: approve them, or add or remove a keyword."""
        form = await request.post()
        photos = [n for v in form.getall("photo", []) if (n := _int(v)) is not None]
        action, word = form.get("action"), form.get("word")
        word = word.strip() if isinstance(word, str) else ""
        job = request.match_info["job"]

        async def act() -> Done:
            if action == "approve":
                if not photos:
                    raise review_actions.ReviewRefused("no photo is selected: select photos first")
                await review_actions.approve(self._store, job, photos)
                return photos, []
            if action not in ("add", "remove") or not word:
                raise review_actions.ReviewRefused(
                    "say what to do with the selection: approve it, or add or remove a keyword "
                    "(type the keyword)"
                )
            edit = await review_actions.edit_many(self._store, job, photos, **{action: [word]})
            return [p.id for p in edit.changed], edit.skipped

        return await self._act(request, act(), form.get("back"))

    async def _act(
        self, request: web.Request, action: Awaitable[Done], back: object
    ) -> web.StreamResponse:
        """Do `action`; answer JSON to the script (the photos it changed, as they are now),
        else go back to the page (303), or show it with the refusal."""
        try:
            changed, skipped = await action
        except OperatorRefusal as refusal:
            if wants_json(request):
                return web.json_response({"error": str(refusal)}, status=refusal.http_status)
            return await self.review(request, refusal=refusal)
        job = await self._store.resolve_job(request.match_info["job"])
        if wants_json(request):
            return web.json_response(await self._answer(job.id, changed, skipped))
        query = back_query(back)
        raise web.HTTPSeeOther(f"/jobs/{quote(job.id)}/review" + (f"?{query}" if query else ""))

    async def _answer(self, job_id: str, changed: list[int], skipped: list[str]) -> dict[str, Any]:
        """The changed photos as they are now (their index entries), the job's state and
        what was skipped."""
        job = await self._store.get_job(job_id)
        wanted = set(changed)
        if len(wanted) <= FEW:
            found = [await self._store.photo(job_id, photo_id) for photo_id in wanted]
            photos = [p for p in found if p is not None]
        else:
            photos = [p for p in await self._store.photos(job_id) if p.id in wanted]
        entries = [short_entry(p.id, d) for p in photos if (d := TagDetails.of(p)) is not None]
        return {"photos": entries, "state": job.state, "skipped": skipped}


def _thumb_response(body: bytes, version: str, *, fresh: bool) -> web.Response:
    """A thumbnail; kept by the browser for good when asked for by its version."""
    return web.Response(
        body=body,
        content_type="image/jpeg",
        headers={
            "ETag": f'"{version}"',
            "Cache-Control": THUMB_CACHE if fresh else "private, no-cache",
        },
    )


def _neighbours(photos: list[Any], photo_id: int) -> tuple[Any, Any]:
    for index, photo in enumerate(photos):
        if photo.id == photo_id:
            before = photos[index - 1] if index else None
            after = photos[index + 1] if index + 1 < len(photos) else None
            return before, after
    return None, None
