"""A fake of Imagga v2 under /imagga/v2: tags, categorizers, colours, faces, face groupings
(through tickets), croppings, uploads and usage, with its limits.

HTTP Basic auth with any non-empty key and secret (or only the pair pinned with the control
route). Every answer is Imagga's envelope `{"result": ..., "status": {"text", "type"}}`. Answers
come from the pixels received (`vision.py`, read once per md5 when uploaded; an image that cannot
be decoded, or an `image_url`, is read as the synthetic scene its md5 seeds): the same image
always gets the same answer, different images differ. Tags highest confidence first, 0–100; the
nsfw categorizer stays a seeded draw. Face ids from `/faces/detections?return_face_id=1` feed
`POST /faces/groupings` (form or JSON `faces`), which answers a ticket; `GET /tickets/{id}`
answers `is_final: false` for `ticket_seconds`, then the groups. Face recognition indexes
(`imagga_recognition.py`) keep persons by those face ids and recognise them in later shoots.
Every analysis but the ticket reads (and the feeding of an index) counts against the month's
quota. Limits as a real account has them: over the concurrency cap 429, once the month's quota
is spent 403, a categorizer outside the plan 403.

`PUT /_sandbox/imagga` (never faulted, no auth) sets them while running: `{"monthly_limit",
"monthly_processed" (0 resets the month), "concurrency", "credentials": [key, secret] | null,
"forbidden": ["categories/nsfw_beta", "colors", "faces/detections", …], "junk": "html" |
"error_200" | null, "delay_seconds", "ticket_seconds"}`; it answers the settings now in force.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, hdrs, web

from orchestrator.sandbox import vision
from orchestrator.sandbox.imagga_answers import (
    CATEGORIZERS,
    RecognitionIndex,
    categories_for,
    colors_result,
    croppings_result,
    faces_result,
    group_faces,
)

PREFIX = "/imagga/v2"
TRANSLATIONS = {"de": "de:", "fr": "fr:", "es": "es:"}
"""Other languages answer the English word with a prefix (the fake has no dictionary)."""
MONTHLY_LIMIT = 1000
CONCURRENCY_LIMIT = 5
BILLING_PERIOD_END = "2099-01-01T00:00:00Z"

MAX_IMAGE_BYTES = 16 * 1024 * 1024
TICKET_SECONDS = 0.5
UNAUTHORISED = "You need to authenticate with your API key and secret (HTTP Basic)."


@dataclass(kw_only=True)
class ImaggaUpload:
    """One uploaded image."""

    md5_hex: str
    size: int
    deleted: bool = False
    tag_requests: int = 0


@dataclass(kw_only=True)
class Ticket:
    """An asynchronous grouping: pending until `ready_at` (monotonic), then `result`."""

    ready_at: float
    result: dict[str, Any]
    polls: int = 0


@dataclass
class ImaggaState:
    """Uploads, usage and limits of the fake Imagga account."""

    uploads: dict[str, ImaggaUpload] = field(default_factory=dict)
    tag_requests: int = 0
    colors_requests: int = 0
    faces_requests: int = 0
    croppings_requests: int = 0
    groupings_requests: int = 0
    tickets_polled: int = 0
    recognition_requests: int = 0
    """Every request to a recognition index (feed, train, look up), duplicates included."""
    recognition_trainings: int = 0
    recognition_lookups: int = 0
    indexes: dict[str, RecognitionIndex] = field(default_factory=dict)
    """The face recognition indexes, by index id."""
    readings: dict[str, vision.Reading] = field(default_factory=dict)
    """What was seen in each image, by md5 (or by the md5 of an image URL)."""
    faces: dict[str, float] = field(default_factory=dict)
    """Signature hue of every face id handed out."""
    tickets: dict[str, Ticket] = field(default_factory=dict)
    ticket_seconds: float = TICKET_SECONDS
    tagged: list[dict[str, Any]] = field(default_factory=list)
    categorized: list[dict[str, Any]] = field(default_factory=list)
    monthly_limit: int = MONTHLY_LIMIT
    monthly_processed: int = 0
    concurrency: int = CONCURRENCY_LIMIT
    in_flight: int = 0
    peak_in_flight: int = 0
    throttled: int = 0
    refused: int = 0
    credentials: tuple[str, str] | None = None
    forbidden: set[str] = field(default_factory=set)
    junk: str | None = None
    delay_seconds: float = 0.0

    def ledger(self) -> dict[str, Any]:
        """What the ledger reports about Imagga."""
        return {
            "tag_requests": self.tag_requests,
            "colors_requests": self.colors_requests,
            "faces_requests": self.faces_requests,
            "croppings_requests": self.croppings_requests,
            "groupings_requests": self.groupings_requests,
            "tickets": self.tickets_polled,
            "recognition_requests": self.recognition_requests,
            "recognition_trainings": self.recognition_trainings,
            "recognition_lookups": self.recognition_lookups,
            "recognition_indexes": {
                index_id: index.ledger() for index_id, index in self.indexes.items()
            },
            "tagged": list(self.tagged),
            "categorized": list(self.categorized),
            "monthly_limit": self.monthly_limit,
            "monthly_processed": self.monthly_processed,
            "peak_in_flight": self.peak_in_flight,
            "throttled": self.throttled,
            "refused": self.refused,
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

    def settings(self) -> dict[str, Any]:
        """The limits and modes in force, as the control route answers them."""
        return {
            "monthly_limit": self.monthly_limit,
            "monthly_processed": self.monthly_processed,
            "concurrency": self.concurrency,
            "credentials_pinned": self.credentials is not None,
            "forbidden": sorted(self.forbidden),
            "junk": self.junk,
            "delay_seconds": self.delay_seconds,
            "ticket_seconds": self.ticket_seconds,
        }


IMAGGA = web.AppKey("sandbox_imagga", ImaggaState)


def _answer(result: dict[str, Any]) -> web.Response:
    return web.json_response({"result": result, "status": {"text": "", "type": "success"}})


def _error(status: int, text: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"status": {"text": text, "type": "error"}}, status=status, headers=headers
    )


def _authorised(request: web.Request) -> bool:
    scheme, _, encoded = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    key, _, secret = decoded.partition(":")
    if scheme.lower() != "basic" or not (key and secret):
        return False
    pinned = request.app[IMAGGA].credentials
    return pinned is None or pinned == (key, secret)


async def _image_of(request: web.Request) -> tuple[str, bytes] | web.Response:
    """(md5, bytes) of the image in a multipart body (`image` or `image_base64`), or an error;
    what it shows is read (once per md5) before this returns."""
    if not request.content_type.startswith("multipart/"):
        return _error(400, "Send the image as multipart/form-data in the field 'image'")
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            continue
        if part.name == "image":
            chunks = []
            size = 0
            while chunk := await part.read_chunk():
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_IMAGE_BYTES:
                    return _error(413, "The image is too large")
            if size:
                return await _read(request, b"".join(chunks))
            break
        if part.name == "image_base64":
            try:
                data = base64.b64decode(await part.read(decode=False), validate=True)
            except (binascii.Error, ValueError):
                return _error(400, "image_base64 is not valid base64")
            if data:
                return await _read(request, data)
            break
        await part.release()
    return _error(400, "No image was sent in the field 'image' or 'image_base64'")


async def _read(request: web.Request, data: bytes) -> tuple[str, bytes]:
    """(md5, data), with what the image shows read into the account's readings."""
    md5_hex = hashlib.md5(data).hexdigest()
    readings = request.app[IMAGGA].readings
    if md5_hex not in readings:
        readings[md5_hex] = await asyncio.to_thread(vision.read_bytes, data, md5_hex)
    return md5_hex, data


async def _reading_of_seed(request: web.Request, seed: str) -> vision.Reading:
    """The reading for `seed`: an upload's, or the synthetic scene of an image URL's md5."""
    readings = request.app[IMAGGA].readings
    if seed not in readings:
        readings[seed] = await asyncio.to_thread(vision.read_seed, seed)
    return readings[seed]


async def _limited(
    request: web.Request, feature: str, analyse: Callable[[], Awaitable[dict[str, Any]]]
) -> web.Response:
    """Run one billable analysis under the account's limits, counting it once answered."""
    state = request.app[IMAGGA]
    if feature in state.forbidden:
        state.refused += 1
        return _error(403, f"Your plan does not include {feature}. Upgrade to use it.")
    if state.monthly_processed >= state.monthly_limit:
        state.refused += 1
        return _error(403, "You have reached the monthly limit of requests for your plan.")
    if state.in_flight >= state.concurrency:
        state.throttled += 1
        return _error(
            429, "Too many concurrent requests for your plan.", headers={"Retry-After": "1"}
        )
    state.in_flight += 1
    state.peak_in_flight = max(state.peak_in_flight, state.in_flight)
    try:
        if state.delay_seconds:
            await asyncio.sleep(state.delay_seconds)
        if state.junk == "html":
            return web.Response(
                text="<html><body><h1>Maintenance</h1></body></html>", content_type="text/html"
            )
        if state.junk == "error_200":
            return web.json_response(
                {"status": {"text": "Unexpected processing error", "type": "error"}}
            )
        result = await analyse()
        state.monthly_processed += 1
        return _answer(result)
    finally:
        state.in_flight -= 1


def _tags_result(
    request: web.Request, reading: vision.Reading, md5_hex: str | None
) -> Callable[[], Awaitable[dict[str, Any]]]:
    state = request.app[IMAGGA]

    async def analyse() -> dict[str, Any]:
        limit = int(_number(request, "limit", -1))
        threshold = _number(request, "threshold", 0.0)
        languages = [code for code in request.query.get("language", "en").split(",") if code]
        found = [(word, score) for word, score in reading.tags if score >= threshold]
        if limit >= 0:
            found = found[:limit]
        state.tag_requests += 1
        state.tagged.append(
            {
                "md5": md5_hex,
                "tags": [{"tag": word, "confidence": score} for word, score in found],
            }
        )
        return {
            "tags": [
                {
                    "confidence": score,
                    "tag": {code: TRANSLATIONS.get(code, "") + word for code in languages},
                }
                for word, score in found
            ]
        }

    return analyse


def _categories_result(
    request: web.Request, seed: str, md5_hex: str | None, categorizer: str
) -> Callable[[], Awaitable[dict[str, Any]]]:
    state = request.app[IMAGGA]

    async def analyse() -> dict[str, Any]:
        found = categories_for(seed, await _reading_of_seed(request, seed), categorizer)
        state.categorized.append({"md5": md5_hex, "categorizer": categorizer, "categories": found})
        return {
            "categories": [{"confidence": score, "name": {"en": name}} for name, score in found]
        }

    return analyse


def _number(request: web.Request, name: str, default: float) -> float:
    raw = request.query.get(name)
    return default if raw is None else float(raw)


def _query_image(request: web.Request) -> tuple[str, str | None] | web.Response:
    """(seed, md5) of the image named by `image_upload_id` or `image_url`, or an error."""
    state = request.app[IMAGGA]
    upload_id = request.query.get("image_upload_id")
    image_url = request.query.get("image_url")
    if (upload_id is None) == (image_url is None):
        return _error(400, "Provide exactly one of image_url or image_upload_id")
    if upload_id is not None:
        stored = state.uploads.get(upload_id)
        if stored is None or stored.deleted:
            return _error(400, f"Unknown image_upload_id {upload_id}")
        stored.tag_requests += 1
        return stored.md5_hex, stored.md5_hex
    return hashlib.md5(str(image_url).encode()).hexdigest(), None


def _numbers_ok(request: web.Request) -> web.Response | None:
    try:
        _number(request, "limit", -1)
        _number(request, "threshold", 0.0)
    except (ValueError, OverflowError):
        return _error(400, "limit and threshold must be numbers")
    return None


async def upload(request: web.Request) -> web.Response:
    """POST /imagga/v2/uploads, multipart with the file in field `image`"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    image = await _image_of(request)
    if isinstance(image, web.Response):
        return image
    upload_id = f"i{uuid.uuid4().hex}"
    request.app[IMAGGA].uploads[upload_id] = ImaggaUpload(md5_hex=image[0], size=len(image[1]))
    return _answer({"upload_id": upload_id})


async def tags(request: web.Request) -> web.Response:
    """GET /imagga/v2/tags?image_upload_id=|image_url=[&limit=][&threshold=][&language=]"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    if (bad := _numbers_ok(request)) is not None:
        return bad
    named = _query_image(request)
    if isinstance(named, web.Response):
        return named
    seed, md5_hex = named
    reading = await _reading_of_seed(request, seed)
    return await _limited(request, "tags", _tags_result(request, reading, md5_hex))


async def tags_of_image(request: web.Request) -> web.Response:
    """POST /imagga/v2/tags with the image (multipart `image` or `image_base64`)"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    if (bad := _numbers_ok(request)) is not None:
        return bad
    image = await _image_of(request)
    if isinstance(image, web.Response):
        return image
    reading = await _reading_of_seed(request, image[0])
    return await _limited(request, "tags", _tags_result(request, reading, image[0]))


def _categorizer(request: web.Request) -> str | web.Response:
    categorizer = request.match_info["categorizer_id"]
    if categorizer not in CATEGORIZERS:
        return _error(404, f"Unknown categorizer {categorizer[:64]!r}")
    return categorizer


async def categories(request: web.Request) -> web.Response:
    """GET /imagga/v2/categories/{categorizer_id}?image_upload_id=|image_url="""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    categorizer = _categorizer(request)
    if isinstance(categorizer, web.Response):
        return categorizer
    named = _query_image(request)
    if isinstance(named, web.Response):
        return named
    seed, md5_hex = named
    feature = f"categories/{categorizer}"
    return await _limited(request, feature, _categories_result(request, seed, md5_hex, categorizer))


async def categories_of_image(request: web.Request) -> web.Response:
    """POST /imagga/v2/categories/{categorizer_id} with the image"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    categorizer = _categorizer(request)
    if isinstance(categorizer, web.Response):
        return categorizer
    image = await _image_of(request)
    if isinstance(image, web.Response):
        return image
    feature = f"categories/{categorizer}"
    return await _limited(
        request, feature, _categories_result(request, image[0], image[0], categorizer)
    )


def _resolutions(request: web.Request) -> list[tuple[int, int]] | None:
    """The `resolution=W1xH1,W2xH2` asked for, or None if malformed or missing."""
    found = []
    for item in request.query.get("resolution", "").split(","):
        width, _, height = item.strip().lower().partition("x")
        if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
            return None
        found.append((int(width), int(height)))
    return found or None


async def _analysis(
    request: web.Request,
    feature: str,
    counter: str,
    answer: Callable[[str, vision.Reading], dict[str, Any]],
) -> web.Response:
    """A billed GET analysis of the image named by `image_upload_id` or `image_url`."""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    named = _query_image(request)
    if isinstance(named, web.Response):
        return named
    seed, _ = named
    state = request.app[IMAGGA]

    async def analyse() -> dict[str, Any]:
        setattr(state, counter, getattr(state, counter) + 1)
        return answer(seed, await _reading_of_seed(request, seed))

    return await _limited(request, feature, analyse)


async def colors(request: web.Request) -> web.Response:
    """GET /imagga/v2/colors?image_upload_id=|image_url="""
    return await _analysis(
        request, "colors", "colors_requests", lambda _, reading: colors_result(reading)
    )


async def face_detections(request: web.Request) -> web.Response:
    """GET /imagga/v2/faces/detections?image_upload_id=|image_url=[&return_face_id=1]"""
    state = request.app[IMAGGA]
    face_ids = request.query.get("return_face_id") in ("1", "true")
    return await _analysis(
        request,
        "faces/detections",
        "faces_requests",
        lambda seed, reading: faces_result(state.faces, seed, reading, face_ids=face_ids),
    )


async def croppings(request: web.Request) -> web.Response:
    """GET /imagga/v2/croppings?image_upload_id=|image_url=&resolution=W1xH1[,W2xH2…]"""
    sizes = _resolutions(request)
    if sizes is None:
        return _error(400, "Give resolution as WIDTHxHEIGHT[,WIDTHxHEIGHT…]")
    return await _analysis(
        request,
        "croppings",
        "croppings_requests",
        lambda _, reading: croppings_result(reading, sizes),
    )


async def _face_ids_sent(request: web.Request) -> list[str] | None:
    """The face ids of a groupings request (JSON `{"faces": [...]}` or form `faces=a,b`)."""
    if request.content_type == "application/json":
        try:
            body = json.loads(await request.text())
        except ValueError:
            return None
        faces = body.get("faces") if isinstance(body, dict) else None
    else:
        form = await request.post()
        faces = [item for value in form.getall("faces", []) for item in str(value).split(",")]
    if not isinstance(faces, list) or not all(isinstance(item, str) for item in faces):
        return None
    return [item.strip() for item in faces if item.strip()]


async def face_groupings(request: web.Request) -> web.Response:
    """POST /imagga/v2/faces/groupings with the face ids: answers a ticket"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    state = request.app[IMAGGA]
    sent = await _face_ids_sent(request)
    if not sent:
        return _error(400, "Send the face ids to group as faces (a JSON list or a form field)")
    unknown = [face_id for face_id in sent if face_id not in state.faces]
    if unknown:
        return _error(400, f"Unknown face id {unknown[0][:64]}")

    async def analyse() -> dict[str, Any]:
        state.groupings_requests += 1
        groups = group_faces({face_id: state.faces[face_id] for face_id in dict.fromkeys(sent)})
        ticket_id = f"t{uuid.uuid4().hex}"
        state.tickets[ticket_id] = Ticket(
            ready_at=time.monotonic() + state.ticket_seconds,
            result={
                "groups": [{"faces": group} for group in groups if len(group) > 1],
                "ungrouped": [group[0] for group in groups if len(group) == 1],
            },
        )
        return {"ticket_id": ticket_id}

    return await _limited(request, "faces/groupings", analyse)


async def ticket(request: web.Request) -> web.Response:
    """GET /imagga/v2/tickets/{ticket_id}: pending (`is_final` false) for a moment, then done"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    state = request.app[IMAGGA]
    state.tickets_polled += 1
    found = state.tickets.get(request.match_info["ticket_id"])
    if found is None:
        return _error(404, "Ticket not found")
    found.polls += 1
    final = time.monotonic() >= found.ready_at
    return _answer(
        {
            "ticket_id": request.match_info["ticket_id"],
            "is_final": final,
            "status": "success" if final else "pending",
            "ticket_result": found.result if final else None,
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
    """GET /imagga/v2/usage[?concurrency=1]"""
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    state = request.app[IMAGGA]
    result: dict[str, Any] = {
        "monthly_limit": state.monthly_limit,
        "monthly_processed": state.monthly_processed,
        "daily_processed": state.monthly_processed,
        "billing_period_end": BILLING_PERIOD_END,
    }
    if request.query.get("concurrency") in ("1", "true"):
        result["concurrency"] = {"max": state.concurrency, "now": state.in_flight}
    return _answer(result)


async def control(request: web.Request) -> web.Response:
    """PUT /_sandbox/imagga: set the account's limits and modes (see the module docstring)."""
    state = request.app[IMAGGA]
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return web.json_response({"detail": "send a JSON object"}, status=400)
    try:
        for name in ("monthly_limit", "monthly_processed", "concurrency"):
            if name in body:
                value = int(body[name])
                if value < 0 or (name == "concurrency" and value < 1):
                    raise ValueError(f"{name} out of range")
                setattr(state, name, value)
        if "credentials" in body:
            pair = body["credentials"]
            state.credentials = None if pair is None else (str(pair[0]), str(pair[1]))
        if "forbidden" in body:
            state.forbidden = {str(item) for item in body["forbidden"]}
        if "junk" in body:
            if body["junk"] not in (None, "html", "error_200"):
                raise ValueError("junk must be null, 'html' or 'error_200'")
            state.junk = body["junk"]
        if "delay_seconds" in body:
            state.delay_seconds = max(0.0, float(body["delay_seconds"]))
        if "ticket_seconds" in body:
            state.ticket_seconds = max(0.0, float(body["ticket_seconds"]))
    except (TypeError, ValueError, IndexError) as exc:
        return web.json_response({"detail": str(exc)}, status=400)
    return web.json_response(state.settings())


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the Imagga routes and their control route."""
    router.add_post(f"{PREFIX}/uploads", upload)
    router.add_delete(f"{PREFIX}/uploads/{{upload_id}}", delete_upload)
    router.add_get(f"{PREFIX}/tags", tags)
    router.add_post(f"{PREFIX}/tags", tags_of_image)
    router.add_get(f"{PREFIX}/categories/{{categorizer_id}}", categories)
    router.add_post(f"{PREFIX}/categories/{{categorizer_id}}", categories_of_image)
    router.add_get(f"{PREFIX}/colors", colors)
    router.add_get(f"{PREFIX}/faces/detections", face_detections)
    router.add_post(f"{PREFIX}/faces/groupings", face_groupings)
    router.add_get(f"{PREFIX}/tickets/{{ticket_id}}", ticket)
    router.add_get(f"{PREFIX}/croppings", croppings)
    router.add_get(f"{PREFIX}/usage", usage)
    router.add_put("/_sandbox/imagga", control)
