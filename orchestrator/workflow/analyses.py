"""Imagga's other analyses of a photo, on the same small copy as its tags: the palette
(`--colors`), the faces (`--faces`, `--people`) and the smart croppings (`--smart-crops`).

Each answer is kept by the copy's md5 and the analysis before it is used (`kept_answer`), as
the tags are: a crash, a rerun or `retry` never pays for it again. The copy is uploaded to
Imagga once, only when some analysis is not kept yet, and the upload deleted afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Awaitable, Callable
from typing import Any

from orchestrator.apicore.errors import ApiError
from orchestrator.errors import Transient
from orchestrator.integrations.tagging import Tagging
from orchestrator.spec import TagSpec
from orchestrator.store.queries import Store
from orchestrator.store.tag_results import keep_result, kept_result
from orchestrator.workflow.tag_details import Face, FocalPoint, PaletteColour

CROP_RATIOS: dict[str, tuple[int, int]] = {"1:1": (1, 1), "4:5": (4, 5), "9:16": (9, 16)}
"""The delivered crops, by imgix `ar`: square, portrait feed, story."""


async def kept_answer(
    store: Store,
    tagging: Tagging,
    image_md5: str,
    analysis: str,
    ask: Callable[[], Awaitable[list[Any]]],
) -> list[Any]:
    """Imagga's answer for this image and analysis: the kept one, else asked for and kept."""
    lock = tagging.lock_for(image_md5, analysis)
    try:
        async with lock:
            kept = await kept_result(store, image_md5, analysis)
            if kept is not None:
                return kept
            answer = await ask()
            # Paid for: kept even when another photo's refusal stops the stage right now.
            await asyncio.shield(keep_result(store, image_md5, analysis, answer))
            return answer
    finally:
        tagging.done_with(image_md5, analysis, lock)


class _Upload:
    """The copy uploaded to Imagga on first need, for the analyses that read an upload id."""

    def __init__(self, tagging: Tagging, image: bytes) -> None:
        self._tagging = tagging
        self._image = image
        self._id: str | None = None
        self._lock = asyncio.Lock()

    async def id(self) -> str:
        """The upload id (the image is uploaded the first time)."""
        async with self._lock:
            if self._id is None:
                self._id = await self._tagging.imagga.upload(self._image)
            return self._id

    async def delete(self) -> None:
        """Delete the upload, if one was made (Imagga drops it within a day anyway)."""
        if self._id is not None:
            with contextlib.suppress(Transient, ApiError):
                await self._tagging.imagga.delete_upload(self._id)


def picture_size(image: bytes) -> tuple[int, int]:
    """Width and height of the small copy (the pixels Imagga's boxes are in)."""
    from PIL import Image

    with Image.open(io.BytesIO(image)) as picture:
        return picture.size


def crop_sizes(width: int, height: int) -> list[tuple[int, int]]:
    """For each crop ratio, the largest box of that ratio inside the picture."""
    sizes = []
    for across, down in CROP_RATIOS.values():
        if width * down >= height * across:
            sizes.append((max(1, round(height * across / down)), height))
        else:
            sizes.append((width, max(1, round(width * down / across))))
    return sizes


async def analyse(
    store: Store, tagging: Tagging, image: bytes, image_md5: str, spec: TagSpec
) -> dict[str, Any]:
    """The photo's palette, faces and focal point as asked by the job (the `TagDetails`
    fields they fill), each from its kept answer or asked for now."""
    found: dict[str, Any] = {}
    if not (spec.colors or spec.wants_faces or spec.smart_crops):
        return found
    imagga = tagging.imagga
    upload = _Upload(tagging, image)
    width, height = await asyncio.to_thread(picture_size, image)
    sizes = crop_sizes(width, height)

    async def colours() -> list[Any]:
        return [item.to_json() for item in await imagga.colors(await upload.id())]

    async def faces() -> list[Any]:
        return [item.to_json() for item in await imagga.faces(await upload.id())]

    async def croppings() -> list[Any]:
        return [item.to_json() for item in await imagga.croppings(await upload.id(), sizes)]

    try:
        if spec.colors:
            kept = await kept_answer(store, tagging, image_md5, "colors", colours)
            found["colors"] = tuple(
                PaletteColour(hex=c["hex"], percent=c["percent"], name=c["name"]) for c in kept
            )
        if spec.wants_faces:
            kept = await kept_answer(store, tagging, image_md5, "faces", faces)
            found["faces"] = tuple(_face(entry, width, height) for entry in kept)
        if spec.smart_crops:
            analysis = "croppings:" + ",".join(f"{w}x{h}" for w, h in sizes)
            kept = await kept_answer(store, tagging, image_md5, analysis, croppings)
            found["focal_point"] = focal_point(kept, width, height)
    finally:
        await upload.delete()
    return found


def _face(entry: dict[str, Any], width: int, height: int) -> Face:
    """A kept face box as a region of the upright picture (0..1)."""
    x1, x2 = sorted(_unit(entry[key] / width) for key in ("xmin", "xmax"))
    y1, y2 = sorted(_unit(entry[key] / height) for key in ("ymin", "ymax"))
    return Face(
        x=round((x1 + x2) / 2, 6),
        y=round((y1 + y2) / 2, 6),
        w=round(x2 - x1, 6),
        h=round(y2 - y1, 6),
        confidence=float(entry.get("confidence") or 0.0),
        face_id=entry.get("face_id"),
    )


def focal_point(crops: list[dict[str, Any]], width: int, height: int) -> FocalPoint | None:
    """The subject's focal point: across, the centre of the narrowest cropping; down, the
    centre of the shortest (a cropping spanning the whole side says nothing about it)."""
    if not crops:
        return None
    narrowest = min(crops, key=lambda c: (c["x2"] - c["x1"]) / width)
    shortest = min(crops, key=lambda c: (c["y2"] - c["y1"]) / height)
    return FocalPoint(
        x=round(_unit((narrowest["x1"] + narrowest["x2"]) / 2 / width), 4),
        y=round(_unit((shortest["y1"] + shortest["y2"]) / 2 / height), 4),
    )


def _unit(value: float) -> float:
    return min(1.0, max(0.0, float(value)))
