"""Lists and statuses from a hostile Imagen: the engine records clear errors and never lies.

A small proxy on a real port sits between the engine and the in-process sandbox and rewrites
one kind of answer per test (upload links, download links, statuses); the transfers still go to
the sandbox's storage. Ends with a bounded fuzz loop over all three.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from orchestrator.imagen.client import ImagenClient
from orchestrator.service import jobs as job_views
from orchestrator.service.receiver import OTHER_STATUS, CallbackBody
from orchestrator.states import JobState
from orchestrator.workflow.shoot_record import RECORD
from tests.engine_harness import API_KEY, Harness, harness
from tests.resume_support import make_crash_shoot

Rewrite = Callable[[Any], Any]
UPLOAD_LINKS = re.compile(r"/get_temporary_upload_links$")
DOWNLOAD_LINKS = re.compile(r"/(edit|export)/get_temporary_download_links$")
STATUS = re.compile(r"/(edit|export)/status$")


class Proxy:
    """Forwards every API call to the sandbox; rewrites the payload of matching answers."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.rewrites: list[tuple[re.Pattern[str], Rewrite]] = []

    async def handle(self, request: web.Request) -> web.Response:
        async with (
            aiohttp.ClientSession() as http,
            http.request(
                request.method,
                self.upstream + request.path.removeprefix("/v1"),
                params=request.query,
                data=await request.read(),
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() in ("x-api-key", "content-type")
                },
            ) as answer,
        ):
            body = await answer.read()
            status = answer.status
        for pattern, rewrite in self.rewrites:
            if status == 200 and pattern.search(request.path):
                payload = json.loads(body)
                data = payload.get("data", payload)
                data = rewrite(data)
                body = json.dumps({"data": data}).encode()
        return web.Response(body=body, status=status, content_type="application/json")


@contextlib.asynccontextmanager
async def hostile(h: Harness) -> AsyncIterator[Proxy]:
    """A proxy in front of the harness's sandbox, the harness's client pointed at it."""
    proxy = Proxy(h.sandbox.api_url)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    session = aiohttp.ClientSession()
    real = h.client
    h.client = ImagenClient(session, base_url=f"http://127.0.0.1:{port}/v1", api_key=API_KEY)
    try:
        yield proxy
    finally:
        h.client = real
        await session.close()
        await runner.cleanup()


@pytest.fixture
async def h(migrated_db_url: str) -> AsyncIterator[Harness]:
    async with harness(migrated_db_url) as h:
        yield h


def _files(data: Any) -> list[dict[str, Any]]:
    return list(data["files_list"])


def _with_files(data: Any, files: list[Any]) -> Any:
    return {**data, "files_list": files}


def _tree(root: Path) -> set[Path]:
    """Everything under `root` (a few files: cheap enough to walk inside a test's loop)."""
    return set(root.rglob("*"))


async def _notes(h: Harness, job_id: str) -> list[str]:
    return [e.message for e in await h.store.events(job_id) if e.kind == "note"]


async def test_a_missing_upload_link_fails_that_photo_with_a_reason_and_retry_sends_it(
    h: Harness, tmp_path: Path
) -> None:
    missing = sorted(make_crash_shoot(tmp_path / "shoot", jpeg_only=True))[-1]

    def without_missing(data: Any) -> Any:
        return _with_files(data, [f for f in _files(data) if f["file_name"] != missing])

    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((UPLOAD_LINKS, without_missing))
        failed = await h.drive(job_id)
        assert failed.job.state == JobState.FAILED
        assert "could not be uploaded" in (failed.job.last_error or "")
        failures = [f for p in await h.store.photos(job_id) for f in p.failures]
        assert len(failures) == 1 and failures[0][0] == "upload"
        assert "gave no upload link" in failures[0][1]
        [photo] = [p for p in await h.store.photos(job_id) if p.failures]
        assert photo.file_name == missing
        proxy.rewrites.clear()
        await job_views.retry(h.store, job_id)
        assert (await h.drive(job_id)).job.state == JobState.COMPLETED


async def test_upload_links_for_names_not_asked_or_twice_are_noted_once_and_ignored(
    h: Harness, tmp_path: Path
) -> None:
    make_crash_shoot(tmp_path / "shoot", jpeg_only=True)

    def odd(data: Any) -> Any:
        files = _files(data)
        junk = [
            {"file_name": f"junk{i}.jpg", "upload_link": "http://127.0.0.1:9/x"} for i in range(50)
        ]
        twice = [{**files[0], "upload_link": "http://127.0.0.1:9/second"}]
        return _with_files(data, files + twice + junk)

    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((UPLOAD_LINKS, odd))
        assert (await h.drive(job_id)).job.state == JobState.COMPLETED
    notes = [n for n in await _notes(h, job_id) if "upload links" in n]
    assert len(notes) == 1 and notes[0].startswith("Imagen answered 51 upload links")


async def test_a_photo_whose_output_imagen_never_lists_fails_the_job_and_retry_fetches_it(
    h: Harness, tmp_path: Path
) -> None:
    files = make_crash_shoot(tmp_path / "shoot", jpeg_only=True)
    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((DOWNLOAD_LINKS, lambda d: _with_files(d, _files(d)[1:])))
        lost = await h.drive(job_id)
        # Not completed: every view shows the job failed, and why.
        assert lost.job.state == JobState.FAILED
        assert "Imagen returned no edit output" in (lost.job.last_error or "")
        [summary] = [j for j in await job_views.status(h.store) if j["id"] == job_id]
        assert summary["state"] == "failed" and summary["last_error"]
        proxy.rewrites.clear()
        await job_views.retry(h.store, job_id)
        done = await h.drive(job_id)
    assert done.job.state == JobState.COMPLETED
    assert sorted(p.name for p in _tree(Path(done.job.edited_dir))) == sorted(files)


async def test_an_output_name_that_climbs_out_of_its_folder_fails_that_photo_only(
    h: Harness, tmp_path: Path
) -> None:
    """`../IMG.jpg` pairs with IMG.jpg by its stem, but is never written: the photo fails."""
    files = sorted(make_crash_shoot(tmp_path / "shoot", jpeg_only=True))

    def climbing(data: Any) -> Any:
        return _with_files(
            data,
            [
                {**f, "file_name": "../" + f["file_name"]} if f["file_name"] == files[0] else f
                for f in _files(data)
            ],
        )

    before = _tree(tmp_path)
    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((DOWNLOAD_LINKS, climbing))
        failed = await h.drive(job_id)
    assert failed.job.state == JobState.FAILED
    [photo] = [p for p in await h.store.photos(job_id) if p.failures]
    assert photo.file_name == files[0]
    [(phase, reason)] = [f[:2] for f in photo.failures]
    assert phase == "edit" and reason.startswith("refused, ")
    edited = Path(failed.job.edited_dir)
    assert sorted(p.name for p in _tree(edited)) == files[1:]
    assert {p for p in _tree(tmp_path) - before if edited not in (p, *p.parents)} <= {
        tmp_path / "shoot" / RECORD.parent,
        *(tmp_path / "shoot" / RECORD.parent).rglob("*"),
    }


async def test_junk_download_entries_are_summed_up_in_one_note(h: Harness, tmp_path: Path) -> None:
    make_crash_shoot(tmp_path / "shoot", jpeg_only=True)

    def junk(data: Any) -> Any:
        extra = [
            {"file_name": f"zz{i}.jpg", "download_link": "http://127.0.0.1:9/x"}
            for i in range(100_000)
        ]
        return _with_files(data, _files(data) + extra)

    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((DOWNLOAD_LINKS, junk))
        assert (await h.drive(job_id)).job.state == JobState.COMPLETED
    events = await h.store.events(job_id)
    notes = [e for e in events if e.kind == "note" and "match no photo" in e.message]
    assert len(notes) == 1 and (notes[0].data or {}).get("count") == 100_000
    assert len(events) < 40


async def test_invented_statuses_are_noted_a_few_times_only(h: Harness, tmp_path: Path) -> None:
    make_crash_shoot(tmp_path / "shoot", jpeg_only=True)
    polls = iter(range(1_000_000))

    def invent(data: Any) -> Any:
        n = next(polls)
        return data if n >= 12 else {**data, "status": f"Weird \x1b[2J status {n}"}

    async with hostile(h) as proxy:
        [job_id] = await h.plan(tmp_path / "shoot", export=False)
        proxy.rewrites.append((STATUS, invent))
        assert (await h.drive(job_id)).job.state == JobState.COMPLETED
    assert len([n for n in await _notes(h, job_id) if "unknown edit status" in n]) == 3


def test_a_callback_flood_of_invented_statuses_is_one_inbox_key() -> None:
    keys = {
        CallbackBody(project_uuid="p", action="edit", status=f"s{i}").status for i in range(1000)
    }
    assert keys == {OTHER_STATUS}
    assert CallbackBody(project_uuid="p", action="edit", status=" Completed ").status == "completed"


FUZZ_CASES = 12


def _fuzz_names(rng: random.Random, names: list[str]) -> list[str]:
    pool = [
        *names,
        "../escape.jpg",
        "/etc/passwd",
        "a\x00b.jpg",
        "\x1b]0;x\x07.jpg",
        "x" * 300 + ".jpg",
        "",
        "COM1.jpg",
        "dir/inner.jpg",
        "IMG_0001.JPG",
    ]
    return [rng.choice(pool) for _ in range(rng.randrange(0, len(names) + 4))]


def _fuzz_list(rng: random.Random, key: str) -> Rewrite:
    def rewrite(data: Any) -> Any:
        files = _files(data)
        names = [f["file_name"] for f in files]
        if rng.random() < 0.5:
            return data
        out = [f for f in files if rng.random() < 0.8]
        out += [
            {
                "file_name": n,
                key: rng.choice([files[0][key] if files else "x", "ftp://x/y", "not a link", ""]),
            }
            for n in _fuzz_names(rng, names)
        ]
        rng.shuffle(out)
        return _with_files(data, out)

    return rewrite


def _fuzz_status(rng: random.Random) -> Rewrite:
    def rewrite(data: Any) -> Any:
        choice = rng.random()
        if choice < 0.6:
            return data
        word = rng.choice(
            [
                "COMPLETED",
                "completed ",
                "Failed",
                "",
                "\x1b[2J",
                "pending\n",
                "In Progress",
                "??",
                "x" * 500,
            ]
        )
        return {**data, "status": word, "progress": rng.choice([None, -5, 1e9, "many"])}

    return rewrite


@pytest.mark.parametrize("db_backend", ["sqlite"])
async def test_fuzzed_lists_and_statuses_end_cleanly_and_write_only_in_the_output_folders(
    h: Harness, tmp_path: Path
) -> None:
    for case in range(FUZZ_CASES):
        rng = random.Random(f"hostile-imagen-{case}")
        shoot = tmp_path / f"case{case}" / "shoot"
        make_crash_shoot(shoot, jpeg_only=True, seed=case)
        before = _tree(tmp_path)
        async with hostile(h) as proxy:
            [job_id] = await h.plan(shoot, export=True)
            proxy.rewrites += [
                (UPLOAD_LINKS, _fuzz_list(rng, "upload_link")),
                (DOWNLOAD_LINKS, _fuzz_list(rng, "download_link")),
                (STATUS, _fuzz_status(rng)),
            ]
            outcome = await asyncio.wait_for(h.drive(job_id), timeout=120)
        job = outcome.job
        assert job.state in (JobState.COMPLETED, JobState.FAILED) or outcome.paused, case
        if job.state == JobState.FAILED or outcome.paused:
            assert job.last_error, case
        if job.state == JobState.COMPLETED:
            assert all(p.done("edit") and p.done("export") for p in await h.store.photos(job_id)), (
                case
            )
        created = _tree(tmp_path) - before
        # The outputs, and the shoot's own record of its jobs (written by planning).
        outputs = (Path(job.edited_dir), Path(job.exported_dir), shoot / RECORD.parent)
        for path in created:
            assert path in outputs or any(o in path.parents for o in outputs), (case, path)
