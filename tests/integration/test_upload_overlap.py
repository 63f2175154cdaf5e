"""Photos are hashed while earlier ones are on the wire, and links are asked for in growing batches.

What the engine did is observed at the sandbox: a middleware sees each request as it arrives,
before its body. No timing: the order of events is forced by the read-ahead bound (a photo is
hashed at most 2 x link_batch_size photos ahead of the uploads started).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from aiohttp import web

from orchestrator.sandbox.samples import make_sample_shoot
from tests.engine_harness import CrashPlan, Harness, harness

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@contextlib.asynccontextmanager
async def observed(
    db_url: str, on_request: Callable[[web.Request], None], *, workers: int, link_batch_size: int
) -> AsyncIterator[Harness]:
    """A harness whose sandbox calls `on_request` for every request as it arrives."""

    @web.middleware
    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        on_request(request)
        return await handler(request)

    async with harness(
        db_url, workers=workers, link_batch_size=link_batch_size, observers=[observe]
    ) as h:
        yield h


def is_upload(request: web.Request) -> bool:
    return request.method == "PUT" and "/upload/" in request.path


def is_links_request(request: web.Request) -> bool:
    return request.path.endswith("/get_temporary_upload_links")


async def test_the_first_upload_reaches_storage_before_the_last_photo_is_hashed(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=8, jpeg=0, raw_size=300 * 1024)
    last: list[Path] = []
    new_md5: list[str] = []

    def on_request(request: web.Request) -> None:
        # The last photo gets new content (same size) as the first upload arrives: had it been
        # hashed before, its upload would carry the old MD5, fail storage's check and need a
        # second link.
        if is_upload(request) and not new_md5:
            data = bytearray(last[0].read_bytes())
            data[-1024:] = bytes(1024)
            last[0].write_bytes(data)
            new_md5.append(hashlib.md5(data).hexdigest())

    async with observed(migrated_db_url, on_request, workers=1, link_batch_size=2) as h:
        [job_id] = await h.plan(shoot)
        last.append(shoot / (await h.store.photos(job_id))[-1].rel_path)
        await h.drive(job_id)
        assert (await h.store.get_job(job_id)).state == "completed"
        project = h.ledger_project(job_id)
    assert project is not None
    stored = project["files"][last[0].name]
    assert new_md5 and stored["md5"] == new_md5[0]
    assert (stored["links_issued"], stored["uploads_completed"]) == (1, 1)


async def test_a_crash_while_hashing_ahead_repeats_only_the_upload_in_flight(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    make_sample_shoot(shoot, raw=10, jpeg=0, raw_size=300 * 1024)
    async with observed(migrated_db_url, lambda _: None, workers=1, link_batch_size=2) as h:
        [job_id] = await h.plan(shoot)
        assert await h.crash(job_id, CrashPlan("after_upload", 3))
        hashed = [p for p in await h.store.photos(job_id) if p.md5]
        uploaded = [p for p in await h.store.photos(job_id) if p.done("upload")]
        assert len(uploaded) == 2
        assert len(hashed) > 3, "the hashing was not ahead of the uploads"
        await h.drive(job_id)
        assert (await h.store.get_job(job_id)).state == "completed"
        project = h.ledger_project(job_id)
    assert project is not None
    counts = sorted(f["uploads_completed"] for f in project["files"].values())
    assert counts == [1] * 9 + [2]  # the third, uploaded but not recorded, went again


async def test_a_shoot_of_tiny_photos_asks_for_links_in_few_requests(
    migrated_db_url: str, tmp_path: Path
) -> None:
    shoot = tmp_path / "shoot"
    photos, batch, workers = 300, 50, 4
    make_sample_shoot(shoot, raw=0, jpeg=photos)
    sizes: list[int] = []

    def on_request(request: web.Request) -> None:
        if is_links_request(request):
            sizes.append(request.content_length or 0)

    async with observed(migrated_db_url, on_request, workers=workers, link_batch_size=batch) as h:
        [job_id] = await h.plan(shoot)
        await h.drive(job_id)
        assert (await h.store.get_job(job_id)).state == "completed"
    # Fixed batches would take 6; growing from one photo adds about log2(50), and each worker
    # starting a batch of its own at most one more.
    assert len(sizes) <= math.ceil(photos / batch) + math.ceil(math.log2(batch)) + workers
    assert sizes[0] < sizes[-1]  # the first request asked for one link only
