"""A fake of Imagga v2 under /imagga/v2: upload an image, get its tags, delete it, read usage.

HTTP Basic auth with any non-empty key and secret. Every answer is Imagga's envelope
`{"result": ..., "status": {"text", "type"}}`. Tags are a deterministic function of the image's
md5 (or of the URL for `image_url`), highest confidence first, confidences 0–100.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import random
import uuid
from dataclasses import dataclass
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

PREFIX = "/imagga/v2"
VOCABULARY = (
    "portrait", "people", "person", "smile", "happy", "love", "couple", "wedding", "bride",
    "dress", "flower", "bouquet", "celebration", "ceremony", "romantic", "elegant", "fashion",
    "beauty", "face", "studio", "light", "outdoors", "nature", "sky", "sunset", "beach", "city",
    "architecture", "landscape", "tree", "water", "summer", "travel", "family", "child",
    "lifestyle", "evening", "garden", "party", "dance",
)  # fmt: skip
TAGS_PER_IMAGE = 15
MONTHLY_LIMIT = 1000
CONCURRENCY_LIMIT = 5


@dataclass(kw_only=True)
class ImaggaUpload:
    """One uploaded image."""

    md5_hex: str
    size: int
    deleted: bool = False
    tag_requests: int = 0


class ImaggaState:
    """Uploads and usage of the fake Imagga account."""

    def __init__(self) -> None:
        self.uploads: dict[str, ImaggaUpload] = {}
        self.tag_requests = 0

    def ledger(self) -> dict[str, Any]:
        """What the ledger reports about Imagga."""
        return {
            "tag_requests": self.tag_requests,
            "uploads": {
                upload_id: {
                    "md5": upload.md5_hex,
                    "size": upload.size,
                    "deleted": upload.deleted,
                    "tag_requests": upload.tag_requests,
                }
                for upload_id, upload in self.uploads.items()
            },
        }


IMAGGA = web.AppKey("sandbox_imagga", ImaggaState)


def tags_for(seed_hex: str) -> list[tuple[str, float]]:
    """(tag, confidence) pairs for an image, highest confidence first."""
    rng = random.Random(seed_hex)
    confidence = rng.uniform(92.0, 100.0)
    tags = []
    for word in rng.sample(VOCABULARY, TAGS_PER_IMAGE):
        tags.append((word, round(confidence, 4)))
        confidence = max(0.5, confidence - rng.uniform(1.0, 9.0))
    return tags


def _answer(result: dict[str, Any]) -> web.Response:
    return web.json_response({"result": result, "status": {"text": "", "type": "success"}})


def _error(status: int, text: str) -> web.Response:
    return web.json_response({"status": {"text": text, "type": "error"}}, status=status)


def _authorised(request: web.Request) -> bool:
    scheme, _, encoded = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    key, _, secret = decoded.partition(":")
    return scheme.lower() == "basic" and bool(key and secret)


UNAUTHORISED = "You need to authenticate with your API key and secret (HTTP Basic)."


async def upload(request: web.Request) -> web.Response:
    """POST /imagga/v2/uploads, multipart with the file in field `image`"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    if not request.content_type.startswith("multipart/"):
        return _error(400, "Send the image as multipart/form-data in the field 'image'")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if isinstance(part, BodyPartReader) and part.name == "image":
            md5 = hashlib.md5()
            size = 0
            while chunk := await part.read_chunk():
                md5.update(chunk)
                size += len(chunk)
            if not size:
                break
            upload_id = f"i{uuid.uuid4().hex}"
            request.app[IMAGGA].uploads[upload_id] = ImaggaUpload(
                md5_hex=md5.hexdigest(), size=size
            )
            return _answer({"upload_id": upload_id})
        await part.release()
    return _error(400, "No image was uploaded in the field 'image'")


def _number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    return default if raw is None else float(raw)


async def tags(request: web.Request) -> web.Response:
    """GET /imagga/v2/tags?image_upload_id=|image_url=[&limit=][&threshold=][&language=]"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    state = request.app[IMAGGA]
    upload_id = request.query.get("image_upload_id")
    image_url = request.query.get("image_url")
    if (upload_id is None) == (image_url is None):
        return _error(400, "Provide exactly one of image_url or image_upload_id")
    try:
        limit = int(_number(request, "limit", -1))
        threshold = _number(request, "threshold", 0.0)
    except (ValueError, OverflowError):
        return _error(400, "limit and threshold must be numbers")
    if upload_id is not None:
        stored = state.uploads.get(upload_id)
        if stored is None or stored.deleted:
            return _error(400, f"Unknown image_upload_id {upload_id}")
        stored.tag_requests += 1
        seed = stored.md5_hex
    else:
        seed = hashlib.md5(str(image_url).encode()).hexdigest()
    state.tag_requests += 1
    languages = request.query.get("language", "en").split(",")
    found = [(word, score) for word, score in tags_for(seed) if score >= threshold]
    if limit >= 0:
        found = found[:limit]
    return _answer(
        {
            "tags": [
                {"confidence": score, "tag": {language: word for language in languages}}
                for word, score in found
            ]
        }
    )


async def delete_upload(request: web.Request) -> web.Response:
    """DELETE /imagga/v2/uploads/{upload_id}"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    stored = request.app[IMAGGA].uploads.get(request.match_info["upload_id"])
    if stored is None or stored.deleted:
        return _error(404, "Upload not found")
    stored.deleted = True
    return _answer({})


async def usage(request: web.Request) -> web.Response:
    """GET /imagga/v2/usage"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    processed = request.app[IMAGGA].tag_requests
    return _answer(
        {
            "concurrency": {"max": CONCURRENCY_LIMIT, "now": 0},
            "monthly_limit": MONTHLY_LIMIT,
            "monthly_processed": processed,
            "daily_processed": processed,
        }
    )


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the Imagga routes."""
    router.add_post(f"{PREFIX}/uploads", upload)
    router.add_delete(f"{PREFIX}/uploads/{{upload_id}}", delete_upload)
    router.add_get(f"{PREFIX}/tags", tags)
    router.add_get(f"{PREFIX}/usage", usage)
