"""The sandbox over real HTTP on a real port: the Imagen flow, its traps, faults and callbacks."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from imagen_sdk.models import (
    PresignedUrlList,
    ProfileApiResponse,
    ProjectListItem,
    ProjectListResponse,
    SkyTemplatesResponse,
    StatusDetails,
)

from orchestrator.sandbox import (
    FAULT_NAMES,
    RunningSandbox,
    SandboxConfig,
    make_sample_shoot,
    parse_faults,
    serve_forever,
    start_sandbox,
)
from orchestrator.sandbox.jpeg import EOI, SOI, TEMPLATE, with_comment
from orchestrator.sandbox.state import SMALL_OBJECT

KEY = "test-key"
EDIT_SECONDS = 0.3
Starter = Callable[..., Awaitable[RunningSandbox]]


@pytest.fixture
async def start() -> AsyncIterator[Starter]:
    """Start sandboxes (edit_seconds 0.3 unless told otherwise); all are closed afterwards."""
    started: list[RunningSandbox] = []

    async def starter(**settings: Any) -> RunningSandbox:
        settings.setdefault("edit_seconds", EDIT_SECONDS)
        sandbox = await start_sandbox(SandboxConfig(**settings))
        started.append(sandbox)
        return sandbox

    yield starter
    for sandbox in started:
        await sandbox.close()


@pytest.fixture
async def sandbox(start: Starter) -> RunningSandbox:
    return await start()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def md5_b64(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def jpeg_bytes(label: str) -> bytes:
    return with_comment(label.encode())


def raw_bytes(label: str, size: int = 4096) -> bytes:
    return (b"II*\x00" + label.encode() * size)[:size]


async def call(
    http: aiohttp.ClientSession,
    sandbox: RunningSandbox,
    method: str,
    path: str,
    body: Any = None,
    *,
    key: str | None = KEY,
    **kwargs: Any,
) -> tuple[int, Any]:
    """One Imagen API call; (status, parsed JSON body or None)."""
    headers = {"x-api-key": key} if key is not None else {}
    async with http.request(
        method, sandbox.api_url + path, json=body, headers=headers, **kwargs
    ) as response:
        text = await response.text()
        return response.status, json.loads(text) if text else None


async def put(
    http: aiohttp.ClientSession,
    url: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    content_type: bool = False,
) -> tuple[int, str]:
    """PUT to a presigned link, with no Content-Type unless `content_type` lets aiohttp add one."""
    skip = () if content_type else ("Content-Type",)
    async with http.put(url, data=body, headers=headers, skip_auto_headers=skip) as response:
        return response.status, await response.text()


async def create_project(http: aiohttp.ClientSession, sandbox: RunningSandbox, **body: Any) -> str:
    status, answer = await call(http, sandbox, "POST", "/projects/", body or None)
    assert status == 200, answer
    return str(answer["data"]["project_uuid"])


async def links(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, project: str, files: dict[str, bytes]
) -> dict[str, str]:
    body = {"files_list": [{"file_name": n, "md5": md5_b64(b)} for n, b in files.items()]}
    status, answer = await call(
        http, sandbox, "POST", f"/projects/{project}/get_temporary_upload_links", body
    )
    assert status == 200, answer
    parsed = PresignedUrlList.model_validate(answer["data"])
    return {item.file_name: item.upload_link for item in parsed.files_list}


async def upload(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, project: str, files: dict[str, bytes]
) -> None:
    for name, url in (await links(http, sandbox, project, files)).items():
        status, text = await put(
            http, url, files[name], headers={"Content-MD5": md5_b64(files[name])}
        )
        assert status == 200, text


async def wait_for(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, project: str, action: str
) -> list[StatusDetails]:
    """Poll `action`'s status until it ends; every status seen."""
    seen: list[StatusDetails] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        status, answer = await call(http, sandbox, "GET", f"/projects/{project}/{action}/status")
        assert status == 200, answer
        seen.append(StatusDetails.model_validate(answer["data"]))
        if seen[-1].status in ("Completed", "Failed"):
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"{action} did not finish: {seen[-1]}")


async def start_edit(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, project: str, **body: Any
) -> tuple[int, Any]:
    """POST /edit the way the official SDK does: JSON text with an empty Content-Type."""
    async with http.post(
        f"{sandbox.api_url}/projects/{project}/edit",
        data=json.dumps(body).encode(),
        headers={"x-api-key": KEY, "Content-Type": ""},
    ) as response:
        return response.status, await response.json(content_type=None)


async def edited_project(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, files: dict[str, bytes], **edit: Any
) -> str:
    project = await create_project(http, sandbox)
    await upload(http, sandbox, project, files)
    edit.setdefault("profile_key", 2001)
    status, answer = await start_edit(http, sandbox, project, **edit)
    assert status == 200, answer
    assert (await wait_for(http, sandbox, project, "edit"))[-1].status == "Completed"
    return project


async def download_links(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, project: str, action: str
) -> dict[str, str]:
    path = f"/projects/{project}/{action}/get_temporary_download_links"
    status, answer = await call(http, sandbox, "GET", path)
    assert status == 200, answer
    return {item["file_name"]: item["download_link"] for item in answer["data"]["files_list"]}


async def fetch(http: aiohttp.ClientSession, url: str, **kwargs: Any) -> tuple[int, bytes, Any]:
    async with http.get(url, **kwargs) as response:
        return response.status, await response.read(), response.headers


def ledger_project(sandbox: RunningSandbox, project: str) -> dict[str, Any]:
    return next(p for p in sandbox.ledger()["projects"] if p["project_uuid"] == project)


# --------------------------------------------------------------------------- the happy path


async def test_full_flow_by_raw_http(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    shoot = {p.name: p.read_bytes() for p in make_sample_shoot(tmp_path, raw=0, jpeg=3)}

    status, answer = await call(http, sandbox, "GET", "/profiles")
    assert status == 200
    profiles = ProfileApiResponse.model_validate(answer["data"]).profiles
    jpg_profile = next(p for p in profiles if p.image_type == "JPG")

    project = await create_project(http, sandbox, name="wedding-42")
    await upload(http, sandbox, project, shoot)
    status, answer = await start_edit(http, sandbox, project, profile_key=jpg_profile.profile_key)
    assert (status, answer) == (200, {"data": {"message": "Edit request received"}})

    seen = await wait_for(http, sandbox, project, "edit")
    assert seen[0].status in ("Pending", "In Progress")
    assert {s.status for s in seen} <= {"Pending", "In Progress", "Completed"}
    assert (seen[-1].status, seen[-1].progress) == ("Completed", 100.0)

    ledger = ledger_project(sandbox, project)
    for name, url in (await download_links(http, sandbox, project, "edit")).items():
        status, body, headers = await fetch(http, url)
        assert status == 200
        assert hashlib.md5(body).hexdigest() == ledger["edit_outputs"][name]
        assert headers["ETag"] == f'"{ledger["edit_outputs"][name]}"'
        assert body.startswith(SOI + b"\xff\xe1") and body.endswith(EOI)
        assert b"http://ns.adobe.com/xap/1.0/" in body
    assert sorted(ledger["edit_outputs"]) == sorted(shoot)

    status, answer = await call(http, sandbox, "POST", f"/projects/{project}/export")
    assert status == 200, answer
    assert (await wait_for(http, sandbox, project, "export"))[-1].status == "Completed"
    ledger = ledger_project(sandbox, project)
    for name, url in (await download_links(http, sandbox, project, "export")).items():
        status, body, _ = await fetch(http, url)
        assert status == 200
        assert body.startswith(SOI) and body.endswith(EOI)
        assert hashlib.md5(body).hexdigest() == ledger["export_outputs"][name]

    ledger = ledger_project(sandbox, project)
    assert ledger["edit_requests"] == 1
    assert ledger["export_requests"] == 1
    assert ledger["files"] == {
        name: {
            "uploads_completed": 1,
            "size": len(body),
            "md5": hashlib.md5(body).hexdigest(),
            "links_issued": 1,
        }
        for name, body in shoot.items()
    }
    assert ledger["downloads_completed"] == {
        "edit": dict.fromkeys(shoot, 1),
        "export": dict.fromkeys(shoot, 1),
    }


async def test_raw_outputs_follow_the_input_type(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    cr2, dng = raw_bytes("cr2"), raw_bytes("dng")
    project = await edited_project(
        http, sandbox, {"A.CR2": cr2, "B.dng": dng}, profile_key=1001, crop=True
    )
    urls = await download_links(http, sandbox, project, "edit")
    assert sorted(urls) == ["A.xmp", "B.dng"]
    _, sidecar, _ = await fetch(http, urls["A.xmp"])
    assert hashlib.md5(cr2).hexdigest().encode() in sidecar
    assert b'imagen:ProfileKey="1001"' in sidecar and b'imagen:Tools="crop"' in sidecar
    _, dng_out, _ = await fetch(http, urls["B.dng"])
    assert dng_out.startswith(dng) and b"<x:xmpmeta" in dng_out[len(dng) :]

    hdr = await edited_project(
        http, sandbox, {"C.NEF": raw_bytes("nef")}, profile_key=1002, hdr_merge=True
    )
    assert list(await download_links(http, sandbox, hdr, "edit")) == ["C.dng"]


async def test_export_true_runs_the_export_after_the_edit(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    project = await edited_project(http, sandbox, {"A.jpg": jpeg_bytes("a")}, export=True)
    assert (await wait_for(http, sandbox, project, "export"))[-1].status == "Completed"
    assert list(await download_links(http, sandbox, project, "export")) == ["A.jpg"]
    ledger = ledger_project(sandbox, project)
    assert (ledger["edit_requests"], ledger["export_requests"]) == (1, 1)


async def test_project_routes(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    first = await create_project(http, sandbox, name="one")
    second = await create_project(http, sandbox)

    status, answer = await call(http, sandbox, "POST", "/projects", {"name": "one"})
    assert status == 400 and "already exists" in answer["error"]["message"]

    status, answer = await call(
        http, sandbox, "GET", "/projects?page=0&size=1&client_type=API&get_thumbnail=true"
    )
    assert status == 200
    page = ProjectListResponse.model_validate(answer["data"])
    assert [p.project_uuid for p in page.projects] == [second]
    assert (page.pagination.total, page.pagination.size, page.pagination.page) == (2, 1, 0)
    for bad in ("size=0", "size=101", "page=-1", "size=x"):
        status, answer = await call(http, sandbox, "GET", f"/projects?{bad}")
        assert status == 400 and answer["detail"], bad

    status, answer = await call(http, sandbox, "GET", f"/projects/{first}")
    item = ProjectListItem.model_validate(answer["data"])
    assert (item.name, item.number_of_images, item.status) == ("one", 0, "Created")

    status, answer = await call(http, sandbox, "GET", "/projects/one/uuid")
    assert (status, answer) == (200, {"data": {"project_uuid": first}})
    status, answer = await call(http, sandbox, "GET", "/projects/nope/uuid")
    assert status == 404
    status, answer = await call(http, sandbox, "GET", "/projects/sky_replacement/templates")
    assert status == 200
    assert any(t.is_default for t in SkyTemplatesResponse.model_validate(answer["data"]).templates)
    status, answer = await call(http, sandbox, "GET", "/projects/not-a-project")
    assert (status, answer) == (404, {"detail": "Project not found"})
    status, answer = await call(http, sandbox, "GET", "/profiles/")
    assert status == 200 and len(answer["data"]["profiles"]) == 4


async def test_serve_forever_runs_until_cancelled(http: aiohttp.ClientSession) -> None:
    ready: asyncio.Future[RunningSandbox] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_forever(SandboxConfig(), on_ready=ready.set_result))
    sandbox = await asyncio.wait_for(ready, 5)
    assert sandbox.base_url.startswith("http://127.0.0.1:")
    assert sandbox.api_url == sandbox.base_url + "/v1"
    assert (await call(http, sandbox, "GET", "/profiles"))[0] == 200
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(aiohttp.ClientConnectionError):
        await call(http, sandbox, "GET", "/profiles")


# --------------------------------------------------------------------------- traps


async def test_upload_link_rules(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    project = await create_project(http, sandbox)
    path = f"/projects/{project}/get_temporary_upload_links"

    async def ask(*names: str, md5: str | None = None) -> tuple[int, Any]:
        items = [{"file_name": n} | ({"md5": md5} if md5 else {}) for n in names]
        return await call(http, sandbox, "POST", path, {"files_list": items})

    assert await ask("A.jpg", "B.jpg", "A.jpg") == (
        400,
        {"error": {"message": 'File "A.jpg" appears 2 times.'}},
    )
    status, _ = await ask("A.jpg", "B.CR2")
    assert status == 400
    status, _ = await ask("A.png")
    assert status == 400
    status, _ = await ask("A.jpg", md5="not-base64!")
    assert status == 400
    assert (await ask("A.jpg"))[0] == 200
    status, answer = await ask("C.dng")  # a JPEG project stays JPEG across calls
    assert status == 400 and "not both" in answer["error"]["message"]
    status, answer = await ask("A.jpeg")  # would overwrite A.jpg's outputs
    assert status == 400
    assert (await ask("A.jpg"))[0] == 200  # a fresh link for a known file is fine
    assert ledger_project(sandbox, project)["files"]["A.jpg"]["links_issued"] == 2


async def test_storage_refuses_what_s3_refuses(start: Starter, http: aiohttp.ClientSession) -> None:
    sandbox = await start()
    project = await create_project(http, sandbox)
    body = jpeg_bytes("x")
    url = (await links(http, sandbox, project, {"A.jpg": body}))["A.jpg"]
    good_md5 = {"Content-MD5": md5_b64(body)}

    status, text = await put(http, url, body, headers=good_md5, content_type=True)
    assert status == 403 and "SignatureDoesNotMatch" in text  # aiohttp's octet-stream default
    status, text = await put(http, url, body)
    assert status == 403 and "SignatureDoesNotMatch" in text  # signed md5 but no Content-MD5
    status, text = await put(http, url, b"other bytes", headers=good_md5)
    assert status == 400 and "BadDigest" in text
    status, text = await put(http, url, body, headers={**good_md5, "x-api-key": KEY})
    assert status == 400
    tampered = url.replace("X-Signature=", "X-Signature=0")
    status, text = await put(http, tampered, body, headers=good_md5)
    assert status == 403 and "SignatureDoesNotMatch" in text
    status, text = await put(http, url.split("?")[0], body, headers=good_md5)
    assert status == 403 and "AccessDenied" in text

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    async with http.put(
        url, data=chunks(), headers=good_md5, skip_auto_headers=("Content-Type",)
    ) as response:
        assert response.status == 501  # S3 takes no chunked uploads
    assert ledger_project(sandbox, project)["files"]["A.jpg"]["uploads_completed"] == 0
    status, text = await put(http, url, body, headers={"Content-MD5": "AAAA"})
    assert status == 403  # a different Content-MD5 than the link was signed for

    unsigned = (await call(
        http, sandbox, "POST", f"/projects/{project}/get_temporary_upload_links",
        {"files_list": [{"file_name": "B.jpg"}]},
    ))[1]["data"]["files_list"][0]["upload_link"]  # fmt: skip
    status, text = await put(http, unsigned, body, headers={"Content-MD5": md5_b64(b"zz")})
    assert status == 400 and "BadDigest" in text
    assert (await put(http, unsigned, body))[0] == 200

    short_lived = await start(link_ttl_seconds=0.05)
    project = await create_project(http, short_lived)
    url = (await links(http, short_lived, project, {"A.jpg": body}))["A.jpg"]
    await asyncio.sleep(0.1)
    status, text = await put(http, url, body, headers=good_md5)
    assert status == 403 and "<Message>Request has expired</Message>" in text


async def test_interrupted_put_keeps_the_previous_upload(
    start: Starter, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    sandbox = await start(data_dir=tmp_path)
    project = await create_project(http, sandbox)
    first = jpeg_bytes("first")
    await upload(http, sandbox, project, {"A.jpg": first})
    second = jpeg_bytes("second") + bytes(300_000)
    url = (await links(http, sandbox, project, {"A.jpg": second}))["A.jpg"]
    sandbox.set_faults({"reset": 1.0})
    with pytest.raises(aiohttp.ClientError):
        await put(http, url, second, headers={"Content-MD5": md5_b64(second)})
    sandbox.set_faults({})
    ledger = sandbox.ledger()
    assert ledger["faults"]["reset"] >= 1  # aiohttp retries an idempotent PUT once on its own
    stored = ledger["projects"][0]["files"]["A.jpg"]
    assert stored == {
        "uploads_completed": 1,
        "size": len(first),
        "md5": hashlib.md5(first).hexdigest(),
        "links_issued": 2,
    }
    assert not await asyncio.to_thread(lambda: list(tmp_path.rglob("*.part")))


async def test_edit_rules(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    project = await create_project(http, sandbox)
    status, answer = await call(http, sandbox, "GET", f"/projects/{project}/edit/status")
    assert (status, answer) == (404, {"detail": "No edit requested for this project"})
    status, _ = await call(http, sandbox, "GET", f"/projects/{project}/export/status")
    assert status == 404

    await links(http, sandbox, project, {"A.jpg": b""})  # a link, but no upload
    status, answer = await start_edit(http, sandbox, project, profile_key=2001)
    assert status == 400 and "No uploaded images" in answer["error"]["message"]
    await upload(http, sandbox, project, {"B.jpg": jpeg_bytes("b")})

    for bad in (
        {},
        {"profile_key": 9999},
        {"profile_key": 1001},  # a RAW profile on JPEG files
        {"profile_key": 2001, "crop": True, "portrait_crop": True},
        {"profile_key": 2001, "headshot_crop": True, "crop": True},
        {"profile_key": 2001, "straighten": True, "perspective_correction": True},
        {"profile_key": 2001, "hdr_merge": True},  # RAW only
        {"profile_key": 2001, "photography_type": "SELFIES"},
        {"profile_key": 2001, "crop_aspect_ratio": "1X1"},
        {"profile_key": 2001, "sky_replacement_template_id": 99},
        {"profile_key": 2001, "callback_url": "ftp://example.invalid/x"},
        {"profile_key": 2001, "smooth_skin": "yes"},
    ):
        status, answer = await start_edit(http, sandbox, project, **bad)
        assert status == 400 and answer["error"]["message"], bad

    status, answer = await call(http, sandbox, "POST", f"/projects/{project}/edit", {
        "profile_key": 2001, "photography_type": "WEDDING", "crop": True,
        "crop_aspect_ratio": "4X5", "straighten": True, "sky_replacement_template_id": 1,
    })  # fmt: skip
    assert status == 200, answer  # application/json is accepted too
    status, answer = await start_edit(http, sandbox, project, profile_key=2001)
    assert status == 400 and "already" in answer["error"]["message"]
    status, answer = await call(http, sandbox, "POST", f"/projects/{project}/export")
    assert status == 400  # the edit is still running
    assert (await wait_for(http, sandbox, project, "edit"))[-1].status == "Completed"
    status, answer = await start_edit(http, sandbox, project, profile_key=2001)
    assert status == 400

    assert (await call(http, sandbox, "POST", f"/projects/{project}/export"))[0] == 200
    assert (await call(http, sandbox, "POST", f"/projects/{project}/export"))[0] == 400
    ledger = ledger_project(sandbox, project)
    assert (ledger["edit_requests"], ledger["edit_requests_rejected"]) == (1, 2)
    assert (ledger["export_requests"], ledger["export_requests_rejected"]) == (1, 1)
    assert ledger["edit_inputs"] == ["B.jpg"] and ledger["edit_skipped"] == ["A.jpg"]


async def test_a_failed_edit_reports_why_and_can_be_retried(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    project = await create_project(http, sandbox)
    await upload(http, sandbox, project, {"A.jpg": b"this is not a jpeg"})
    assert (await start_edit(http, sandbox, project, profile_key=2001))[0] == 200
    final = (await wait_for(http, sandbox, project, "edit"))[-1]
    assert final.status == "Failed" and "not a valid JPEG" in str(final.details)
    path = f"/projects/{project}/edit/get_temporary_download_links"
    assert (await call(http, sandbox, "GET", path))[0] == 409

    await upload(http, sandbox, project, {"A.jpg": jpeg_bytes("a")})
    assert (await start_edit(http, sandbox, project, profile_key=2001))[0] == 200
    assert (await wait_for(http, sandbox, project, "edit"))[-1].status == "Completed"
    assert ledger_project(sandbox, project)["edit_requests"] == 2


async def test_api_key(start: Starter, http: aiohttp.ClientSession) -> None:
    pinned = await start(api_key="s3cret")
    assert await call(http, pinned, "GET", "/profiles", key="wrong") == (
        401,
        {"detail": "Invalid API key"},
    )
    assert (await call(http, pinned, "GET", "/profiles", key=None))[0] == 401
    assert (await call(http, pinned, "GET", "/profiles", key="s3cret"))[0] == 200

    open_sandbox = await start()
    assert (await call(http, open_sandbox, "GET", "/profiles", key=None))[0] == 401
    assert (await call(http, open_sandbox, "GET", "/profiles", key=" "))[0] == 401
    assert (await call(http, open_sandbox, "GET", "/profiles", key="anything"))[0] == 200
    assert await call(http, open_sandbox, "GET", "/nowhere") == (404, {"detail": "Not Found"})


async def test_downloads_answer_conditional_requests_like_s3(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    project = await edited_project(http, sandbox, {"A.jpg": jpeg_bytes("a")})
    url = (await download_links(http, sandbox, project, "edit"))["A.jpg"]
    status, whole, headers = await fetch(http, url)
    etag = f'"{hashlib.md5(whole).hexdigest()}"'
    assert (status, headers["ETag"], headers["Content-Length"]) == (200, etag, str(len(whole)))

    status, tail, headers = await fetch(http, url, headers={"Range": "bytes=100-"})
    assert (status, tail, headers["ETag"]) == (206, whole[100:], etag)
    assert headers["Content-Range"] == f"bytes 100-{len(whole) - 1}/{len(whole)}"
    status, body, _ = await fetch(http, url, headers={"If-Match": '"0123"'})
    assert status == 412 and b"PreconditionFailed" in body
    assert (await fetch(http, url, headers={"If-Match": etag, "Range": "bytes=1-"}))[0] == 206
    assert (await fetch(http, url, headers={"If-None-Match": etag}))[0] == 304
    status, body, _ = await fetch(http, url, headers={"If-Range": '"stale"', "Range": "bytes=5-"})
    assert (status, body) == (200, whole)
    async with http.head(url) as response:
        assert response.status == 200
        assert response.headers["Content-Length"] == str(len(whole))
        assert response.headers["ETag"] == etag
    assert (await fetch(http, url, headers={"x-api-key": KEY}))[0] == 400
    assert (await fetch(http, url.replace("/edit/", "/export/")))[0] == 403
    # Full bodies count as completed downloads: the first GET, the resumed 206s, the If-Range 200.
    assert ledger_project(sandbox, project)["downloads_completed"]["edit"] == {"A.jpg": 4}


RANGES: list[
    tuple[Callable[[int], str], tuple[int, int] | Callable[[int], tuple[int, int]] | None]
] = [
    (lambda n: "bytes=0-", lambda n: (0, n)),
    (lambda n: "bytes=10-19", (10, 20)),
    (lambda n: "bytes=0-0", (0, 1)),
    (lambda n: "bytes=-5", lambda n: (n - 5, n)),
    (lambda n: "bytes=-999999999", lambda n: (0, n)),
    (lambda n: "bytes=5-999999999", lambda n: (5, n)),
    (lambda n: f"bytes={n}-", None),
    (lambda n: "bytes=abc", None),
]
"""Range headers for an object of n bytes, and the slice each answers (None: 416)."""


async def test_small_objects_in_memory_answer_ranges_as_those_on_disk(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    """Small objects are served from memory, larger ones from disk: the same answers."""
    files = {"S.jpg": jpeg_bytes("s"), "L.jpg": SOI + bytes(range(256)) * 2048}
    assert len(files["L.jpg"]) > SMALL_OBJECT
    project = await edited_project(http, sandbox, files)
    for name, url in (await download_links(http, sandbox, project, "edit")).items():
        status, whole, headers = await fetch(http, url)
        size = len(whole)
        assert (status, headers["Accept-Ranges"]) == (200, "bytes"), name
        for header, wanted in RANGES:
            status, body, headers = await fetch(http, url, headers={"Range": header(size)})
            if wanted is None:
                assert (status, headers["Content-Range"]) == (416, f"bytes */{size}"), name
                continue
            start, end = wanted(size) if callable(wanted) else wanted
            assert (status, body) == (206, whole[start:end]), (name, header(size))
            assert headers["Content-Range"] == f"bytes {start}-{end - 1}/{size}", name
        async with http.head(url, headers={"Range": "bytes=3-"}) as response:
            assert response.status == 206 and await response.read() == b""
            assert response.headers["Content-Length"] == str(size - 3)
    # The whole bodies and the ranges to the end count as completed downloads.
    assert ledger_project(sandbox, project)["downloads_completed"]["edit"] == {
        "S.jpg": 5,
        "L.jpg": 5,
    }


async def test_large_upload_streams_to_disk(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    size, piece = 20 * 1024 * 1024, bytes(range(256)) * 4096
    project = await create_project(http, sandbox)
    url = (
        await call(
            http, sandbox, "POST", f"/projects/{project}/get_temporary_upload_links",
            {"files_list": [{"file_name": "BIG.CR2"}]},
        )
    )[1]["data"]["files_list"][0]["upload_link"]  # fmt: skip

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // len(piece)):
            yield piece

    before = _reset_peak_memory()
    async with http.put(
        url, data=body(), headers={"Content-Length": str(size)}, skip_auto_headers=("Content-Type",)
    ) as response:
        assert response.status == 200
    # Buffering the body anywhere would lift the peak by its whole size.
    assert _memory("VmHWM") - before < size // 2
    stored = ledger_project(sandbox, project)["files"]["BIG.CR2"]
    assert stored["size"] == size
    assert stored["md5"] == hashlib.md5(piece * (size // len(piece))).hexdigest()


def _memory(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no {field}")


def _reset_peak_memory() -> int:
    """Reset this process's peak RSS (Linux) and return the current RSS."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pytest.skip("cannot reset the peak RSS here")
    return _memory("VmRSS")


# --------------------------------------------------------------------------- faults


@pytest.mark.parametrize("fault", ["error_5xx", "throttle_429", "reset", "slow"])
async def test_request_faults_act_before_any_work(
    start: Starter, http: aiohttp.ClientSession, fault: str
) -> None:
    sandbox = await start(faults={fault: 1.0}, slow_seconds=0.2)
    began = time.monotonic()
    if fault == "reset":
        with pytest.raises(aiohttp.ClientConnectionError):
            await call(http, sandbox, "POST", "/projects/", {"name": "x"})
        projects = 0
    else:
        async with http.post(
            sandbox.api_url + "/projects/", json={"name": "x"}, headers={"x-api-key": KEY}
        ) as response:
            if fault == "error_5xx":
                assert response.status in (500, 502, 503)
            elif fault == "throttle_429":
                assert (response.status, response.headers["Retry-After"]) == (429, "1")
            else:
                assert response.status == 200
                assert time.monotonic() - began >= 0.2
        projects = 1 if fault == "slow" else 0
    ledger = sandbox.ledger()
    assert len(ledger["projects"]) == projects
    assert ledger["faults"] == {fault: 1}


async def test_storage_faults(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    project = await edited_project(http, sandbox, {"A.jpg": jpeg_bytes("a")})
    url = (await download_links(http, sandbox, project, "edit"))["A.jpg"]
    sandbox.set_faults({"expire_link": 1.0})
    status, body, _ = await fetch(http, url)
    assert status == 403 and b"Request has expired" in body
    assert (await call(http, sandbox, "GET", "/profiles"))[0] == 200  # API routes unaffected

    sandbox.set_faults({"reset": 1.0})
    with pytest.raises(aiohttp.ClientPayloadError):
        await fetch(http, url)
    sandbox.set_faults({})
    assert sandbox.ledger()["faults"] == {"expire_link": 1, "reset": 1}
    assert ledger_project(sandbox, project)["downloads_completed"]["edit"] == {}


async def test_same_seed_same_faults(start: Starter, http: aiohttp.ClientSession) -> None:
    async def statuses(seed: int) -> list[int]:
        faults = {"error_5xx": 0.3, "throttle_429": 0.3}
        sandbox = await start(faults=faults, seed=seed)
        return [(await call(http, sandbox, "GET", "/profiles"))[0] for _ in range(30)]

    first = await statuses(7)
    assert set(first) > {200, 429}
    assert await statuses(7) == first
    assert await statuses(8) != first


async def test_fault_control(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    async with http.put(sandbox.base_url + "/_sandbox/faults", json={"nope": 1}) as response:
        assert response.status == 400
    async with http.put(sandbox.base_url + "/_sandbox/faults", json={"slow": 0.5}) as response:
        assert (response.status, await response.json()) == (200, {"faults": {"slow": 0.5}})
    with pytest.raises(ValueError, match="between 0 and 1"):
        sandbox.set_faults({"slow": 2})
    async with http.get(sandbox.base_url + "/_sandbox/ledger") as response:
        assert await response.json() == sandbox.ledger()


def test_parse_faults() -> None:
    assert parse_faults("") == {}
    assert parse_faults(" error_5xx=0.1, slow=1 ,") == {"error_5xx": 0.1, "slow": 1.0}
    for bad, message in (
        ("explode=0.1", "unknown fault"),
        ("slow=1.5", "between 0 and 1"),
        ("slow=-0.1", "between 0 and 1"),
        ("slow=often", "not a number"),
        ("slow", "needs a probability"),
        ("slow=0.1,slow=0.2", "twice"),
    ):
        with pytest.raises(ValueError, match=message):
            parse_faults(bad)
    assert set(FAULT_NAMES) == {
        "error_5xx", "throttle_429", "reset", "slow", "expire_link",
        "lose_callback", "duplicate_callback", "reorder_callback",
    }  # fmt: skip
    with pytest.raises(ValueError):
        SandboxConfig(faults={"slow": 3.0})
    with pytest.raises(ValueError):
        SandboxConfig(edit_seconds=-1)


# --------------------------------------------------------------------------- callbacks


class Receiver:
    """A tiny callback receiver: its URL and the callbacks it got, in arrival order."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()

    async def hook(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        self._arrived.set()
        return web.Response(status=204)

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    app = web.Application()
    app.router.add_post("/hooks/{secret}", receiver.hook)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    receiver.url = f"http://127.0.0.1:{runner.addresses[0][1]}/hooks/long-random-secret"
    yield receiver
    await runner.cleanup()


EDIT_DONE = {"status": "Completed", "action": "edit"}
EXPORT_DONE = {"status": "Completed", "action": "export"}


@pytest.mark.parametrize(
    ("fault", "expected", "injected"),
    [
        (None, [EDIT_DONE, EXPORT_DONE], 0),
        ("duplicate_callback", [EDIT_DONE, EDIT_DONE, EXPORT_DONE, EXPORT_DONE], 2),
        # The edit's callback is held back and the export's overtakes it.
        ("reorder_callback", [EXPORT_DONE, EDIT_DONE], 1),
        ("lose_callback", [], 2),
    ],
)
async def test_callbacks(
    start: Starter,
    http: aiohttp.ClientSession,
    receiver: Receiver,
    fault: str | None,
    expected: list[dict[str, str]],
    injected: int,
) -> None:
    sandbox = await start(faults={fault: 1.0} if fault else {})
    project = await create_project(http, sandbox)
    await upload(http, sandbox, project, {"A.jpg": jpeg_bytes("a")})
    status, _ = await start_edit(
        http, sandbox, project, profile_key=2001, export=True, callback_url=receiver.url
    )
    assert status == 200
    assert (await wait_for(http, sandbox, project, "export"))[-1].status == "Completed"
    await receiver.wait_for(len(expected))
    await asyncio.sleep(0.2)  # room for anything unexpected to arrive
    assert receiver.received == [{"project_uuid": project, **item} for item in expected]
    ledger = sandbox.ledger()
    assert ledger["callbacks_sent"] == len(expected)
    assert ledger["faults"] == ({fault: injected} if fault else {})


async def test_a_failed_edit_calls_back_failed(
    sandbox: RunningSandbox, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    project = await create_project(http, sandbox)
    await upload(http, sandbox, project, {"A.jpg": b"broken"})
    await start_edit(http, sandbox, project, profile_key=2001, callback_url=receiver.url)
    await wait_for(http, sandbox, project, "edit")
    await receiver.wait_for(1)
    assert receiver.received == [{"project_uuid": project, "status": "Failed", "action": "edit"}]


# --------------------------------------------------------------------------- Imagga and imgix


async def test_imagga(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    base = sandbox.base_url + "/imagga/v2"
    auth = {"Authorization": aiohttp.encode_basic_auth("key", "secret")}

    async def send(image: bytes) -> str:
        form = aiohttp.FormData()
        form.add_field("image", image, filename="a.jpg", content_type="image/jpeg")
        async with http.post(base + "/uploads", data=form, headers=auth) as response:
            answer = await response.json()
            assert answer["status"]["type"] == "success"
            return str(answer["result"]["upload_id"])

    first, again = await send(TEMPLATE), await send(TEMPLATE)
    async with http.get(base + "/tags", params={"image_upload_id": first}, headers=auth) as r:
        tags = (await r.json())["result"]["tags"]
    scores = [tag["confidence"] for tag in tags]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 100 for s in scores)
    assert all(set(tag["tag"]) == {"en"} for tag in tags)
    params = {"image_upload_id": again, "limit": "3", "threshold": "10"}
    async with http.get(base + "/tags", params=params, headers=auth) as r:
        assert (await r.json())["result"]["tags"] == [t for t in tags if t["confidence"] >= 10][:3]
    both = {"image_upload_id": first, "image_url": "https://x.invalid/a.jpg"}
    async with http.get(base + "/tags", params=both, headers=auth) as r:
        assert r.status == 400 and (await r.json())["status"]["type"] == "error"
    async with http.get(base + "/usage") as r:
        assert r.status == 401
    async with http.delete(f"{base}/uploads/{first}", headers=auth) as r:
        assert r.status == 200
    async with http.get(base + "/tags", params={"image_upload_id": first}, headers=auth) as r:
        assert r.status == 400
    async with http.get(base + "/usage", headers=auth) as r:
        assert (await r.json())["result"]["monthly_processed"] == 2
    imagga = sandbox.ledger()["imagga"]
    assert imagga["tag_requests"] == 2 and imagga["uploads"][first]["deleted"] is True


async def test_imgix(sandbox: RunningSandbox, http: aiohttp.ClientSession) -> None:
    base = sandbox.base_url + "/imgix/api/v1"
    auth = {"Authorization": "Bearer imgix-key"}
    upload_url = f"{base}/sources/src1/upload/shoots/a.jpg"
    jpeg = {**auth, "Content-Type": "image/jpeg"}
    async with http.post(upload_url, data=TEMPLATE, headers=jpeg) as r:
        doc = await r.json(content_type="application/vnd.api+json")
        assert r.status == 200 and doc["data"]["id"] == "src1/shoots/a.jpg"
    async with http.post(upload_url, data=TEMPLATE, headers=jpeg) as r:
        assert r.status == 409 and (await r.json(content_type=None))["errors"]
    status = 429
    while status == 429:  # the third upload within a second waits for the 2/s bucket
        async with http.post(upload_url + "?overwrite=true", data=TEMPLATE, headers=jpeg) as r:
            status = r.status
        await asyncio.sleep(0.05)
    assert status == 200 and sandbox.ledger()["imgix"]["throttled"] >= 1
    asset_url = f"{base}/sources/src1/assets/shoots/a.jpg"
    attributes = {"categories": ["bride"], "custom_fields": {"job": "42"}}
    patch = {"data": {"id": "src1/shoots/a.jpg", "type": "assets", "attributes": attributes}}
    json_api = {**auth, "Content-Type": "application/vnd.api+json"}
    async with http.patch(asset_url, data=json.dumps(patch), headers=json_api) as r:
        assert r.status == 200
    async with http.patch(asset_url, json=patch, headers=auth) as r:
        assert r.status == 415  # JSON:API documents only
    patch["data"]["attributes"] = {"file_size": 1}
    async with http.patch(asset_url, data=json.dumps(patch), headers=json_api) as r:
        assert r.status == 400
    async with http.get(asset_url, headers=auth) as r:
        attributes = (await r.json(content_type=None))["data"]["attributes"]
        assert attributes["categories"] == ["bride"]
        assert attributes["file_size"] == len(TEMPLATE)
    async with http.get(asset_url) as r:
        assert r.status == 401
    purge = {
        "data": {"attributes": {"url": "https://demo.imgix.net/shoots/a.jpg"}, "type": "purges"}
    }
    async with http.post(base + "/purge", data=json.dumps(purge), headers=json_api) as r:
        assert (
            r.status == 200 and (await r.json(content_type=None))["data"]["attributes"]["purge_id"]
        )
    async with http.post(base + "/purge", data=json.dumps(purge), headers=json_api) as r:
        assert r.status == 409
    imgix = sandbox.ledger()["imgix"]
    assert imgix["assets"]["src1/shoots/a.jpg"]["uploads"] == 2
    assert imgix["assets"]["src1/shoots/a.jpg"]["custom_fields"] == {"job": "42"}
    assert imgix["purges"] == ["https://demo.imgix.net/shoots/a.jpg"]


# --------------------------------------------------------------------------- sample shoots


def test_sample_shoot(tmp_path: Path) -> None:
    paths = make_sample_shoot(tmp_path / "a", raw_size=10_000, seed=3)
    assert [p.name for p in paths] == [f"IMG_{n:04d}.CR2" for n in range(1, 7)] + [
        f"IMG_{n:04d}.jpg" for n in range(7, 11)
    ]
    bodies = [p.read_bytes() for p in paths]
    assert len(set(bodies)) == len(bodies)
    for body in bodies[:6]:
        assert len(body) == 10_000 and body.startswith(b"II*\x00\x10\x00\x00\x00CR\x02\x00")
    for body in bodies[6:]:
        assert body.startswith(SOI + b"\xff\xfe") and body.endswith(EOI)
    again = make_sample_shoot(tmp_path / "b", raw_size=10_000, seed=3)
    assert [p.read_bytes() for p in again] == bodies
    other = make_sample_shoot(tmp_path / "c", raw=1, jpeg=0, raw_size=10_000, seed=4)
    assert other[0].read_bytes() != bodies[0]
