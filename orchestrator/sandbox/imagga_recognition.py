"""The fake Imagga's face recognition indexes under /imagga/v2/faces/recognition/{index_id}.

As Imagga's: `PUT` feeds the index persons and their face ids (`{"people": {"Anna": [face
ids]}}`, ids from `/faces/detections?return_face_id=1`; adds to what a person had), `POST`
trains it on everything fed so far and answers a ticket (`GET /tickets/{id}`, final after
`ticket_seconds`; until then lookups use the previous training), and `GET ?face_id=…[&count=N]`
finds the trained persons whose faces look like that face: `{"people": [{"id", "score"}]}`,
best first, scores 0..1 by the faces' signature hues (as the groupings compare them). Training
and lookups are billed like the other analyses; feeding is not. Every request counts in the
ledger's `recognition_requests`, duplicates included.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from aiohttp import web

from orchestrator.sandbox.imagga import (
    IMAGGA,
    PREFIX,
    UNAUTHORISED,
    Ticket,
    _answer,
    _authorised,
    _error,
    _limited,
)
from orchestrator.sandbox.imagga_answers import RecognitionIndex, recognised

MAX_ID_CHARS = 128
FEATURE = "faces/recognition"


def _index_id(request: web.Request) -> str | web.Response:
    index_id = request.match_info["index_id"]
    if not index_id or len(index_id) > MAX_ID_CHARS:
        return _error(400, "The index id must be 1 to 128 characters")
    return index_id


async def _people_sent(request: web.Request) -> dict[str, list[str]] | None:
    """The `people` of a feeding (person id → face ids), or None when malformed."""
    try:
        body = json.loads(await request.text())
    except ValueError:
        return None
    people = body.get("people") if isinstance(body, dict) else None
    if not isinstance(people, dict) or not people:
        return None
    found: dict[str, list[str]] = {}
    for person, faces in people.items():
        if not person.strip() or len(person) > MAX_ID_CHARS or not isinstance(faces, list):
            return None
        if not faces or not all(isinstance(face, str) and face for face in faces):
            return None
        found[person] = faces
    return found


async def feed(request: web.Request) -> web.Response:
    """PUT /imagga/v2/faces/recognition/{index_id} with `{"people": {person: [face ids]}}`"""
    state = request.app[IMAGGA]
    state.recognition_requests += 1
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    index_id = _index_id(request)
    if isinstance(index_id, web.Response):
        return index_id
    people = await _people_sent(request)
    if people is None:
        return _error(400, "Send people as a JSON object of person ids to lists of face ids")
    unknown = [face for faces in people.values() for face in faces if face not in state.faces]
    if unknown:
        return _error(400, f"Unknown face id {unknown[0][:64]}")
    index = state.indexes.setdefault(index_id, RecognitionIndex())
    for person, faces in people.items():
        index.fed.setdefault(person, {}).update({face: state.faces[face] for face in faces})
    return _answer({"people": {person: len(index.fed[person]) for person in people}})


async def train(request: web.Request) -> web.Response:
    """POST /imagga/v2/faces/recognition/{index_id}: train on what was fed; answers a ticket"""
    state = request.app[IMAGGA]
    state.recognition_requests += 1
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    index_id = _index_id(request)
    if isinstance(index_id, web.Response):
        return index_id
    index = state.indexes.get(index_id)
    if index is None or not index.fed:
        return _error(404, "Index not found: feed it persons and their faces first")

    async def analyse() -> dict[str, Any]:
        state.recognition_trainings += 1
        ready_at = time.monotonic() + state.ticket_seconds
        index.pending.append((ready_at, {p: dict(faces) for p, faces in index.fed.items()}))
        ticket_id = f"t{uuid.uuid4().hex}"
        state.tickets[ticket_id] = Ticket(
            ready_at=ready_at, result={"index_id": index_id, "people": len(index.fed)}
        )
        return {"ticket_id": ticket_id}

    return await _limited(request, FEATURE, analyse)


async def lookup(request: web.Request) -> web.Response:
    """GET /imagga/v2/faces/recognition/{index_id}?face_id=…[&count=N]: the matching persons"""
    state = request.app[IMAGGA]
    state.recognition_requests += 1
    if not _authorised(request):
        return _error(401, UNAUTHORISED)
    index_id = _index_id(request)
    if isinstance(index_id, web.Response):
        return index_id
    face_id = request.query.get("face_id", "")
    if face_id not in state.faces:
        return _error(400, f"Unknown face id {face_id[:64]}" if face_id else "Give a face_id")
    try:
        count = max(1, min(100, int(request.query.get("count", "10"))))
    except ValueError:
        return _error(400, "count must be a number")
    index = state.indexes.get(index_id)
    if index is None:
        return _error(404, "Index not found")
    hue = state.faces[face_id]

    async def analyse() -> dict[str, Any]:
        state.recognition_lookups += 1
        index.settle(time.monotonic())
        return {"people": recognised(index, hue, count)}

    return await _limited(request, FEATURE, analyse)


def add_routes(router: web.UrlDispatcher) -> None:
    """Register the recognition index routes."""
    router.add_put(f"{PREFIX}/faces/recognition/{{index_id}}", feed)
    router.add_post(f"{PREFIX}/faces/recognition/{{index_id}}", train)
    router.add_get(f"{PREFIX}/faces/recognition/{{index_id}}", lookup)
