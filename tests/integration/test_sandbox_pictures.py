"""The sandbox looks like a shoot, over real HTTP on a real port: real edited pictures, Imagga
answers read from the pixels, face groupings through tickets, imgix's asset listing."""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from PIL import Image

from orchestrator.sandbox import RunningSandbox, SandboxConfig, pictures, start_sandbox, vision
from tests.integration.test_sandbox import (
    call,
    download_links,
    edited_project,
    fetch,
    jpeg_bytes,
    ledger_project,
    raw_bytes,
    wait_for,
)

AUTH = {"Authorization": aiohttp.encode_basic_auth("key", "secret")}


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox(SandboxConfig(edit_seconds=0.3, imgix_rate_scale=100.0))
    yield running
    await running.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def photo(seed: str, size: tuple[int, int] = (900, 600)) -> bytes:
    """A real JPEG photo: a synthetic scene drawn at `size`."""
    out = io.BytesIO()
    pictures.synthetic(hashlib.md5(seed.encode()).hexdigest(), long_side=max(size)).save(
        out, "JPEG"
    )
    return out.getvalue()


async def exports_of(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, files: dict[str, bytes], profile: int
) -> dict[str, bytes]:
    project = await edited_project(http, sandbox, files, profile_key=profile, export=True)
    assert (await wait_for(http, sandbox, project, "export"))[-1].status == "Completed"
    ledger = ledger_project(sandbox, project)
    bodies = {}
    for name, url in (await download_links(http, sandbox, project, "export")).items():
        _, body, _ = await fetch(http, url)
        assert hashlib.md5(body).hexdigest() == ledger["export_outputs"][name]
        bodies[name] = body
    return bodies


async def test_edits_and_exports_are_edited_pictures(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    big = photo("wedding", (3000, 2000))
    project = await edited_project(http, sandbox, {"A.jpg": big}, profile_key=2001)
    edit_url = (await download_links(http, sandbox, project, "edit"))["A.jpg"]
    _, edit, _ = await fetch(http, edit_url)
    assert b"http://ns.adobe.com/xap/1.0/" in edit[:200]
    picture = Image.open(io.BytesIO(edit))
    assert max(picture.size) <= pictures.LONG_SIDE and picture.size[0] > picture.size[1]
    original = Image.open(io.BytesIO(big)).resize(picture.size).convert("RGB")
    # Visibly edited: the colours moved.
    assert original.getpixel((10, 10)) != picture.convert("RGB").getpixel((10, 10))

    raws = await exports_of(
        http, sandbox, {"R1.CR2": raw_bytes("one"), "R2.CR2": raw_bytes("two")}, 1001
    )
    first, second = (Image.open(io.BytesIO(raws[n])) for n in ("R1.jpg", "R2.jpg"))
    assert max(first.size) == pictures.SYNTHETIC_SIZE[0]
    assert first.tobytes() != second.tobytes()
    again = await exports_of(http, sandbox, {"R1.CR2": raw_bytes("one")}, 1001)
    assert again["R1.jpg"] == raws["R1.jpg"]


async def upload(http: aiohttp.ClientSession, sandbox: RunningSandbox, image: bytes) -> str:
    form = aiohttp.FormData()
    form.add_field("image", image, filename="a.jpg", content_type="image/jpeg")
    async with http.post(sandbox.base_url + "/imagga/v2/uploads", data=form, headers=AUTH) as r:
        return str((await r.json())["result"]["upload_id"])


async def ask(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, path: str, **params: str
) -> dict[str, Any]:
    async with http.get(sandbox.base_url + "/imagga/v2" + path, params=params, headers=AUTH) as r:
        answer = await r.json()
        assert r.status == 200 and answer["status"] == {"text": "", "type": "success"}, answer
        return dict(answer["result"])


async def test_imagga_reads_the_pixels(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    images = {seed: photo(seed) for seed in ("a", "b", "c")}
    ids = {seed: await upload(http, sandbox, image) for seed, image in images.items()}
    again = await upload(http, sandbox, images["a"])

    tags = {seed: await ask(http, sandbox, "/tags", image_upload_id=i) for seed, i in ids.items()}
    assert tags["a"] == await ask(http, sandbox, "/tags", image_upload_id=again)
    assert len({json.dumps(t) for t in tags.values()}) == 3
    colours = {s: await ask(http, sandbox, "/colors", image_upload_id=i) for s, i in ids.items()}
    assert colours["a"] == await ask(http, sandbox, "/colors", image_upload_id=again)
    assert len({json.dumps(c) for c in colours.values()}) == 3
    for answer in colours.values():
        image_colors = answer["colors"]["image_colors"]
        assert image_colors and {"html_code", "closest_palette_color", "percent"} <= set(
            image_colors[0]
        )
        assert 95 <= sum(c["percent"] for c in image_colors) <= 100.01

    crops = await ask(http, sandbox, "/croppings", image_upload_id=ids["b"], resolution="1x1,4x5")
    width, height = Image.open(io.BytesIO(images["b"])).size
    for crop in crops["croppings"]:
        assert 0 <= crop["x1"] < crop["x2"] < width and 0 <= crop["y1"] < crop["y2"] < height
        ratio = (crop["x2"] - crop["x1"] + 1) / (crop["y2"] - crop["y1"] + 1)
        assert ratio == pytest.approx(crop["target_width"] / crop["target_height"], rel=0.01)

    imagga = sandbox.ledger()["imagga"]
    assert (imagga["tag_requests"], imagga["colors_requests"]) == (4, 4)
    assert imagga["croppings_requests"] == 1
    async with http.get(sandbox.base_url + "/imagga/v2/usage", headers=AUTH) as r:
        assert (await r.json())["result"]["monthly_processed"] == 9


def with_people(count: int) -> str:
    """The seed of the first synthetic scene holding exactly `count` people."""
    for number in range(200):
        seed = hashlib.md5(f"people{number}".encode()).hexdigest()
        image = pictures.synthetic(seed, long_side=512)
        if len(vision.read(image, image.size).faces) == count:
            return seed
    raise AssertionError(f"no scene with {count} people")


async def test_faces_are_found_and_grouped_through_a_ticket(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    seed = with_people(2)
    scene = pictures.synthetic(seed)
    out = io.BytesIO()
    scene.save(out, "JPEG")
    first = await upload(http, sandbox, out.getvalue())
    # The same people, another photo of them: mirrored and darker.
    out = io.BytesIO()
    scene.transpose(Image.Transpose.FLIP_LEFT_RIGHT).point(lambda v: int(v * 0.8)).save(out, "JPEG")
    second = await upload(http, sandbox, out.getvalue())
    faces = []
    for upload_id in (first, second):
        found = await ask(
            http, sandbox, "/faces/detections", image_upload_id=upload_id, return_face_id="1"
        )
        assert len(found["faces"]) == 2
        for face in found["faces"]:
            box = face["coordinates"]
            assert 0 <= box["xmin"] < box["xmax"] <= scene.width
            assert box["height"] > box["width"] > 20
        faces += [face["face_id"] for face in found["faces"]]

    base = sandbox.base_url + "/imagga/v2"
    async with http.post(base + "/faces/groupings", json={"faces": faces}, headers=AUTH) as r:
        ticket_id = (await r.json())["result"]["ticket_id"]
    statuses = []
    while True:
        result = await ask(http, sandbox, f"/tickets/{ticket_id}")
        statuses.append(result["status"])
        if result["is_final"]:
            break
        await asyncio.sleep(0.05)
    assert statuses[0] == "pending" and statuses[-1] == "success"
    groups = result["ticket_result"]["groups"]
    # Two persons, each seen once in each photo: two groups of two.
    assert sorted(len(group["faces"]) for group in groups) == [2, 2]
    assert sorted(face for group in groups for face in group["faces"]) == sorted(faces)
    imagga = sandbox.ledger()["imagga"]
    assert imagga["faces_requests"] == 2 and imagga["tickets"] == len(statuses)


async def test_imgix_lists_assets_by_page_filter_and_sort(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    base = sandbox.base_url + "/imgix/api/v1/sources/src1"
    auth = {"Authorization": "Bearer imgix-key"}
    for index, path in enumerate(["shoot/b.jpg", "shoot/a.jpg", "shoot/c.png", "other/d.jpg"]):
        kind = "image/png" if path.endswith("png") else "image/jpeg"
        body = jpeg_bytes(path) + b"x" * index
        async with http.post(
            f"{base}/upload/{path}", data=body, headers={**auth, "Content-Type": kind}
        ) as r:
            assert r.status == 200

    async def listing(**params: str) -> dict[str, Any]:
        async with http.get(base + "/assets", params=params, headers=auth) as r:
            assert r.status == 200
            return dict(await r.json(content_type=None))

    paths: list[str] = []
    cursor: dict[str, str] = {}
    pages = 0
    while True:
        page = await listing(**{"page[limit]": "2", "filter[origin_path]": "shoot/"}, **cursor)
        paths += [item["attributes"]["origin_path"] for item in page["data"]]
        pages += 1
        if page["meta"]["cursor"]["next"] is None:
            break
        cursor = {"page[cursor]": page["meta"]["cursor"]["next"]}
    assert (pages, paths) == (2, ["/shoot/a.jpg", "/shoot/b.jpg", "/shoot/c.png"])
    jpegs = await listing(**{"filter[content_type]": "image/jpeg", "sort": "-file_size"})
    assert [i["attributes"]["origin_path"] for i in jpegs["data"]] == [
        "/other/d.jpg",
        "/shoot/a.jpg",
        "/shoot/b.jpg",
    ]
    async with http.get(base + "/assets", params={"sort": "colour"}, headers=auth) as r:
        assert r.status == 400
    async with http.get(base + "/assets", params={"page[cursor]": "junk"}, headers=auth) as r:
        assert r.status == 400


async def test_tiny_jpegs_stay_cheap_and_differ(
    sandbox: RunningSandbox, http: aiohttp.ClientSession
) -> None:
    files = {f"{n}.jpg": jpeg_bytes(f"tiny {n}") for n in range(3)}
    bodies = await exports_of(http, sandbox, files, 2001)
    sizes = {Image.open(io.BytesIO(body)).size for body in bodies.values()}
    assert sizes == {(8, 8)}  # downscaled, never enlarged
    assert len({Image.open(io.BytesIO(b)).tobytes() for b in bodies.values()}) == 3
    status, _ = await call(http, sandbox, "GET", "/profiles")
    assert status == 200
