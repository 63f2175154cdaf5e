"""The typed async client for Imagga v2 (tags, categorizers, colours, faces, face groupings
through tickets, face recognition indexes, croppings, uploads, usage), built on the API core.

It owns Imagga's wire rules: HTTP Basic with the key and secret, the `{"result", "status"}`
envelope (a 200 whose `status.type` is "error" is a refusal), at most the account's concurrency
cap in flight, and what a 403 means (quota spent or a feature not in the plan: the job pauses).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import aiohttp

from orchestrator.apicore.auth import BasicAuth
from orchestrator.apicore.client import ApiClient, Call, FilePart, OnRetry, RateLimit
from orchestrator.apicore.errors import ApiCredentialsRefused, ApiNotFound
from orchestrator.errors import Transient
from orchestrator.integrations.imagga_models import (
    Category,
    Colour,
    Cropping,
    FaceBox,
    ImaggaForbidden,
    Match,
    Suggestion,
    TicketState,
    Usage,
    quota_spent,
)
from orchestrator.retry import RetryPolicy

PRODUCTION_URL = "https://api.imagga.com/v2"
IMAGGA_RETRY = RetryPolicy(initial_interval=1.0, maximum_interval=30.0, maximum_attempts=8)
"""429 over the concurrency cap and 5xx are retried for about two minutes."""
IMAGGA_TIMEOUT = aiohttp.ClientTimeout(total=120, sock_connect=10)
MAX_ANSWER_BYTES = 2 * 1024 * 1024
DEFAULT_CONCURRENCY = 2
"""In flight before /usage has told the account's cap (the smallest paid plan's)."""


class Slots:
    """A semaphore whose size can change while calls hold it (the cap is learnt from /usage)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_flight = 0
        self._changed = asyncio.Condition()

    @asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        """One slot, held while the block runs."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.in_flight < self.limit)
            self.in_flight += 1
        try:
            yield
        finally:
            async with self._changed:
                self.in_flight -= 1
                self._changed.notify_all()


class ImaggaClient:
    """Calls Imagga's API over a shared aiohttp session; at most `concurrency` analyses at once."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        base_url: str,
        api_key: str,
        api_secret: str,
        concurrency: int | None = None,
        retry: RetryPolicy = IMAGGA_RETRY,
        on_retry: OnRetry | None = None,
    ) -> None:
        self._api = ApiClient(
            session,
            service="Imagga",
            base_url=base_url,
            auth=BasicAuth(api_key, api_secret),
            retry=retry,
            timeout=IMAGGA_TIMEOUT,
            limits={"usage": RateLimit(rate=2, per=1.0)},
            max_answer_bytes=MAX_ANSWER_BYTES,
            error_text=_status_text,
            credentials_hint="Check IMAGGA_API_KEY and IMAGGA_API_SECRET.",
            unreachable_hint="Is IMAGGA_API_URL right (or `orchestrator sandbox` running)?",
            on_retry=on_retry,
        )
        self.base_url = self._api.base_url
        self.configured_concurrency = concurrency
        self._slots = Slots(concurrency or DEFAULT_CONCURRENCY)

    def use_account_cap(self, usage: Usage) -> None:
        """Hold to the account's concurrency cap from /usage, unless one was configured."""
        if self.configured_concurrency is None and usage.concurrency_max:
            self._slots.limit = max(1, usage.concurrency_max)

    @property
    def concurrency(self) -> int:
        """Analyses in flight at most, over every job of the process."""
        return self._slots.limit

    async def usage(self) -> Usage:
        """The account's monthly quota and concurrency (`GET /usage?concurrency=1`)."""
        call = Call(
            name="usage", method="GET", path="/usage", params={"concurrency": 1}, limit="usage"
        )
        result = await self._result(call)
        concurrency = result.get("concurrency") if isinstance(result, dict) else None
        try:
            return Usage(
                monthly_limit=int(result["monthly_limit"]),
                monthly_processed=int(result["monthly_processed"]),
                concurrency_max=_int_or_none(concurrency, "max"),
                concurrency_now=_int_or_none(concurrency, "now"),
                resets_at=_text_or_none(result.get("billing_period_end")),
            )
        except (KeyError, TypeError, ValueError):
            raise self._api.malformed(call, "no monthly_limit and monthly_processed") from None

    async def tags(self, image: bytes, *, languages: Sequence[str]) -> list[Suggestion]:
        """Every tag Imagga suggests for the image, in each language, highest confidence first."""
        call = Call(
            name="tags",
            method="POST",
            path="/tags",
            # Nothing changes at Imagga; a retry only costs the request it repeats.
            idempotent=True,
            params={"language": ",".join(languages)},
            files=(FilePart("image", image, "image.jpg", "image/jpeg"),),
        )
        result = await self._analysis(call)
        entries = result.get("tags") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no tags list in the result")
        found: list[Suggestion] = []
        for entry in entries:
            confidence, words = _scored(entry, "tag")
            if confidence is None:
                raise self._api.malformed(call, "a tag without a confidence and words")
            found += [Suggestion(words[lang], confidence) for lang in languages if lang in words]
        return _by_confidence(found, key=lambda s: s.confidence)

    async def categories(self, image: bytes, categorizer: str) -> list[Category]:
        """The image's categories by one categorizer (`personal_photos`, `nsfw_beta`, …)."""
        call = Call(
            name=f"categories/{categorizer}",
            method="POST",
            path=f"/categories/{quote(categorizer, safe='')}",
            idempotent=True,
            files=(FilePart("image", image, "image.jpg", "image/jpeg"),),
        )
        result = await self._analysis(call)
        entries = result.get("categories") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no categories list in the result")
        found: list[Category] = []
        for entry in entries:
            confidence, names = _scored(entry, "name")
            if confidence is None or not names:
                raise self._api.malformed(call, "a category without a confidence and name")
            found.append(Category(names.get("en") or next(iter(names.values())), confidence))
        return _by_confidence(found, key=lambda c: c.confidence)

    async def upload(self, image: bytes) -> str:
        """Upload the image once for several analyses (`POST /uploads`): its upload id.

        Never billed; the id is only used within this run (Imagga keeps uploads about a day).
        """
        call = Call(
            name="uploads",
            method="POST",
            path="/uploads",
            idempotent=True,  # a repeated upload only leaves one more unused upload
            files=(FilePart("image", image, "image.jpg", "image/jpeg"),),
        )
        result = await self._result(call)
        upload_id = result.get("upload_id") if isinstance(result, dict) else None
        if not isinstance(upload_id, str) or not upload_id:
            raise self._api.malformed(call, "no upload_id in the result")
        return upload_id

    async def delete_upload(self, upload_id: str) -> None:
        """Delete an upload once its analyses are done (`DELETE /uploads/{id}`)."""
        call = Call(name="delete upload", method="DELETE", path=f"/uploads/{quote(upload_id)}")
        await self._result(call)

    async def colors(self, upload_id: str) -> list[Colour]:
        """The image's palette (`GET /colors`): its colours, the largest share first."""
        call = Call(
            name="colors", method="GET", path="/colors", params={"image_upload_id": upload_id}
        )
        result = await self._analysis(call)
        colours = result.get("colors") if isinstance(result, dict) else None
        entries = colours.get("image_colors") if isinstance(colours, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no colors.image_colors list in the result")
        found = [colour for entry in entries if (colour := _colour(entry)) is not None]
        if len(found) < len(entries):
            raise self._api.malformed(call, "a colour without html_code, percent and name")
        return sorted(found, key=lambda c: -c.percent)

    async def faces(self, upload_id: str) -> list[FaceBox]:
        """The faces in the image (`GET /faces/detections`), with ids to group them by."""
        call = Call(
            name="faces/detections",
            method="GET",
            path="/faces/detections",
            params={"image_upload_id": upload_id, "return_face_id": 1},
        )
        result = await self._analysis(call)
        entries = result.get("faces") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no faces list in the result")
        found = [face for entry in entries if (face := _face(entry)) is not None]
        if len(found) < len(entries):
            raise self._api.malformed(call, "a face without coordinates")
        return found

    async def croppings(self, upload_id: str, sizes: Sequence[tuple[int, int]]) -> list[Cropping]:
        """Imagga's smart croppings for each target size (`GET /croppings`)."""
        resolution = ",".join(f"{w}x{h}" for w, h in sizes)
        call = Call(
            name="croppings",
            method="GET",
            path="/croppings",
            params={"image_upload_id": upload_id, "resolution": resolution},
        )
        result = await self._analysis(call)
        entries = result.get("croppings") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no croppings list in the result")
        found = [crop for entry in entries if (crop := _cropping(entry)) is not None]
        if len(found) < len(entries):
            raise self._api.malformed(call, "a cropping without its box")
        return found

    async def group_faces(self, face_ids: Sequence[str]) -> str:
        """Ask for the faces to be grouped by person (`POST /faces/groupings`): a ticket id."""
        call = Call(
            name="faces/groupings",
            method="POST",
            path="/faces/groupings",
            # Billed: repeated only when Imagga certainly did not take it.
            idempotent=False,
            json={"faces": list(face_ids)},
        )
        result = await self._analysis(call)
        ticket_id = result.get("ticket_id") if isinstance(result, dict) else None
        if not isinstance(ticket_id, str) or not ticket_id:
            raise self._api.malformed(call, "no ticket_id in the result")
        return ticket_id

    async def ticket(self, ticket_id: str) -> TicketState:
        """Where an asynchronous task stands (`GET /tickets/{id}`); never billed."""
        call = Call(name="tickets", method="GET", path=f"/tickets/{quote(ticket_id, safe='')}")
        result = await self._result(call)
        if not isinstance(result, dict) or not isinstance(result.get("is_final"), bool):
            raise self._api.malformed(call, "no is_final in the result")
        if not result["is_final"]:
            return TicketState(final=False)
        answer = result.get("ticket_result")
        groups = answer.get("groups") if isinstance(answer, dict) else None
        if not isinstance(groups, list):
            raise self._api.malformed(call, "a final ticket without ticket_result.groups")
        found: list[tuple[str, ...]] = []
        for group in groups:
            faces = group.get("faces") if isinstance(group, dict) else group
            if not isinstance(faces, list) or not all(isinstance(f, str) for f in faces):
                raise self._api.malformed(call, "a group that is not a list of face ids")
            found.append(tuple(faces))
        ungrouped = answer.get("ungrouped") if isinstance(answer, dict) else None
        alone = (
            tuple(f for f in ungrouped if isinstance(f, str)) if isinstance(ungrouped, list) else ()
        )
        return TicketState(final=True, groups=tuple(found), ungrouped=alone)

    async def feed_index(self, index_id: str, people: Mapping[str, Sequence[str]]) -> None:
        """Give a face recognition index persons and their face ids (`PUT
        /faces/recognition/{index_id}`, `{"people": {person: [face ids]}}`); a person fed
        again keeps the faces it had. Not billed; used from the next training on."""
        call = Call(
            name="faces/recognition feed",
            method="PUT",
            path=f"/faces/recognition/{quote(index_id, safe='')}",
            # The same faces fed twice are the same faces: repeating changes nothing.
            idempotent=True,
            json={"people": {person: list(faces) for person, faces in people.items()}},
        )
        await self._result(call)

    async def train_index(self, index_id: str) -> str:
        """Train the index on everything fed (`POST /faces/recognition/{index_id}`): a ticket."""
        call = Call(
            name="faces/recognition train",
            method="POST",
            path=f"/faces/recognition/{quote(index_id, safe='')}",
            # Billed: repeated only when Imagga certainly did not take it.
            idempotent=False,
        )
        result = await self._analysis(call)
        ticket_id = result.get("ticket_id") if isinstance(result, dict) else None
        if not isinstance(ticket_id, str) or not ticket_id:
            raise self._api.malformed(call, "no ticket_id in the result")
        return ticket_id

    async def ticket_final(self, ticket_id: str) -> bool:
        """Whether an asynchronous task (a training) is done (`GET /tickets/{id}`)."""
        call = Call(name="tickets", method="GET", path=f"/tickets/{quote(ticket_id, safe='')}")
        result = await self._result(call)
        if not isinstance(result, dict) or not isinstance(result.get("is_final"), bool):
            raise self._api.malformed(call, "no is_final in the result")
        return bool(result["is_final"])

    async def recognise(self, index_id: str, face_id: str) -> list[Match]:
        """The index's persons that the face looks like, best first (`GET
        /faces/recognition/{index_id}?face_id=…`); none when the index does not exist yet."""
        call = Call(
            name="faces/recognition",
            method="GET",
            path=f"/faces/recognition/{quote(index_id, safe='')}",
            params={"face_id": face_id},
        )
        try:
            result = await self._analysis(call)
        except ApiNotFound:
            return []
        entries = result.get("people") if isinstance(result, dict) else None
        if not isinstance(entries, list):
            raise self._api.malformed(call, "no people list in the result")
        found: list[Match] = []
        for entry in entries:
            person = entry.get("id") if isinstance(entry, dict) else None
            score = _number(entry.get("score")) if isinstance(entry, dict) else None
            if not isinstance(person, str) or not person.strip() or score is None:
                raise self._api.malformed(call, "a person without an id and a score")
            found.append(Match(person.strip()[:128], min(1.0, max(0.0, score))))
        return _by_confidence(found, key=lambda m: m.score)

    async def _analysis(self, call: Call) -> Any:
        async with self._slots.held():
            return await self._result(call)

    async def _result(self, call: Call) -> Any:
        """The `result` of the envelope; 403 as ImaggaForbidden, `status.type: error` refused."""
        try:
            payload = await self._api.send_json(call)
        except ApiCredentialsRefused as exc:
            if exc.status == 403:
                raise ImaggaForbidden(await self._why_forbidden(call)) from None
            raise
        if not isinstance(payload, dict):
            raise self._api.malformed(call, "not a JSON object")
        status = payload.get("status")
        if isinstance(status, dict) and status.get("type") == "error":
            raise self._api.malformed(
                call, f"an error with HTTP 200: {status.get('text') or '(no text)'}", status=200
            )
        if "result" not in payload:
            raise self._api.malformed(call, "no result in the answer")
        return payload["result"]

    async def _why_forbidden(self, call: Call) -> str:
        """Why a 403 came: the quota when /usage shows it spent, else the plan."""
        if call.name != "usage":
            try:
                usage = await self.usage()
            except (ImaggaForbidden, Transient, ApiCredentialsRefused):
                usage = None
            if usage is not None and usage.left == 0:
                return quota_spent(usage)
        return (
            f"Imagga refused {call.name} (HTTP 403): your plan does not allow it; change "
            "the plan or drop the option that asks for it, then run again"
        )


def _status_text(payload: Any) -> str | None:
    """Imagga's explanation in an error answer: `status.text`."""
    if isinstance(payload, dict):
        status = payload.get("status")
        if isinstance(status, dict) and status.get("text"):
            return str(status["text"])
        if payload.get("detail"):
            return str(payload["detail"])
    return None


def _number(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _colour(entry: Any) -> Colour | None:
    """One palette entry, or None when malformed."""
    if not isinstance(entry, dict):
        return None
    code, percent = entry.get("html_code"), _number(entry.get("percent"))
    name = entry.get("closest_palette_color")
    if not isinstance(code, str) or percent is None or not isinstance(name, str) or not name:
        return None
    parent = entry.get("closest_palette_color_parent")
    return Colour(
        hex=code.strip().lower()[:7],
        percent=round(min(100.0, max(0.0, percent)), 2),
        name=name.strip()[:64],
        parent=parent.strip()[:64] if isinstance(parent, str) else "",
    )


def _face(entry: Any) -> FaceBox | None:
    """One detected face, or None when malformed."""
    box = entry.get("coordinates") if isinstance(entry, dict) else None
    if not isinstance(box, dict):
        return None
    sides = [_number(box.get(key)) for key in ("xmin", "ymin", "xmax", "ymax")]
    if any(side is None for side in sides):
        return None
    x1, y1, x2, y2 = (float(side or 0.0) for side in sides)
    if x2 <= x1 or y2 <= y1:
        return None
    face_id = entry.get("face_id")
    return FaceBox(
        xmin=x1,
        ymin=y1,
        xmax=x2,
        ymax=y2,
        confidence=_number(entry.get("confidence")) or 0.0,
        face_id=face_id if isinstance(face_id, str) and face_id else None,
    )


def _cropping(entry: Any) -> Cropping | None:
    """One cropping, or None when malformed."""
    if not isinstance(entry, dict):
        return None
    values = [
        _number(entry.get(k)) for k in ("target_width", "target_height", "x1", "y1", "x2", "y2")
    ]
    if any(value is None for value in values):
        return None
    width, height, x1, y1, x2, y2 = (float(v or 0.0) for v in values)
    if x2 <= x1 or y2 <= y1:
        return None
    return Cropping(int(width), int(height), x1, y1, x2, y2)


def _scored(entry: Any, field: str) -> tuple[float | None, dict[str, str]]:
    """(confidence, {language: word}) of one tag or category entry; None when malformed."""
    if not isinstance(entry, dict):
        return None, {}
    confidence, words = entry.get("confidence"), entry.get(field)
    if not isinstance(confidence, int | float) or isinstance(confidence, bool):
        return None, {}
    if not isinstance(words, dict):
        return None, {}
    clean = {str(k): v.strip() for k, v in words.items() if isinstance(v, str) and v.strip()}
    return min(100.0, max(0.0, float(confidence))), clean


def _by_confidence(items: list[Any], *, key: Any) -> list[Any]:
    """Highest confidence first, Imagga's own order among equals."""
    return sorted(items, key=lambda item: -key(item))


def _int_or_none(mapping: Any, key: str) -> int | None:
    if not isinstance(mapping, dict) or not isinstance(mapping.get(key), int | float):
        return None
    return int(mapping[key])


def _text_or_none(value: Any) -> str | None:
    return str(value)[:64] if isinstance(value, str | int) and str(value) else None
