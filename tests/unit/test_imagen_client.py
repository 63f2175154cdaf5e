"""The Imagen client alone, against mocked HTTP: envelopes, errors, retries, exactly-once rules."""

from __future__ import annotations

import asyncio
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aioresponses import aioresponses
from yarl import URL

from orchestrator.errors import CredentialsRefused, OrchestratorError, Refused, Transient
from orchestrator.imagen.client import API_RETRY, ImagenClient
from orchestrator.imagen.errors import (
    ImagenAmbiguous,
    ImagenAuthError,
    ImagenBadRequest,
    ImagenError,
    ImagenMalformedAnswer,
    ImagenNotFound,
    ImagenUnavailable,
)
from orchestrator.imagen.models import EditOptions, ImageType, PhotographyType
from orchestrator.retry import RetryPolicy
from tests.mock_http import Mocked

BASE = "http://imagen.test/v1"
KEY = "sk-live-SECRET-0123456789"
FAST = RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=3)
PROFILE = {
    "profile_key": 5700,
    "profile_name": "Wedding",
    "profile_type": "Talent",
    "image_type": "RAW",
}

Retries = list[tuple[str, int, str, float]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def mocked() -> Iterator[aioresponses]:
    with Mocked() as mock:
        yield mock


@pytest.fixture
def retries() -> Retries:
    return []


@pytest.fixture
def client(session: aiohttp.ClientSession, retries: Retries) -> ImagenClient:
    return ImagenClient(
        session,
        base_url=BASE + "/",
        api_key=KEY,
        retry=FAST,
        on_retry=lambda *event: retries.append(event),
    )


def sent(mocked: aioresponses, method: str, url: str) -> list[Any]:
    """The recorded calls to one URL."""
    return list(mocked.requests.get((method, URL(url)), []))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_default_retry_policy_is_sensible() -> None:
    assert API_RETRY.initial_interval == 0.5
    assert API_RETRY.maximum_interval == 30.0
    assert API_RETRY.maximum_attempts == 6


# --- envelopes and answer shapes -------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        {"data": {"profiles": [PROFILE]}},
        {"profiles": [PROFILE]},
        [PROFILE],
        {"data": [PROFILE]},
    ],
    ids=["enveloped", "root", "bare-list", "enveloped-bare-list"],
)
async def test_list_profiles_accepts_every_shape(
    client: ImagenClient, mocked: aioresponses, answer: Any
) -> None:
    mocked.get(f"{BASE}/profiles", payload=answer)
    profiles = await client.list_profiles()
    assert [(p.profile_key, p.image_type) for p in profiles] == [(5700, ImageType.RAW)]
    call = sent(mocked, "GET", f"{BASE}/profiles")[0]
    assert call.kwargs["headers"]["x-api-key"] == KEY


async def test_data_is_unwrapped_only_when_it_is_the_only_key(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects/p1", payload={"project_uuid": "p1", "data": "other"})
    mocked.get(f"{BASE}/projects/p2", payload={"data": {"project_uuid": "p2", "name": "n"}})
    assert (await client.get_project("p1")).project_uuid == "p1"
    assert (await client.get_project("p2")).name == "n"


async def test_create_project_sends_json_name_and_reads_uuid(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.post(f"{BASE}/projects/", payload={"data": {"project_uuid": "u-1"}})
    mocked.post(f"{BASE}/projects/", payload={"project_uuid": "u-2"})
    assert await client.create_project("Smith wedding") == "u-1"
    assert await client.create_project() == "u-2"
    first, second = sent(mocked, "POST", f"{BASE}/projects/")
    assert first.kwargs["json"] == {"name": "Smith wedding"}
    assert second.kwargs["json"] == {}


async def test_create_project_with_unreadable_success_is_ambiguous(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.post(f"{BASE}/projects/", payload={"data": {"message": "created"}})
    with pytest.raises(ImagenAmbiguous, match="look it up by name"):
        await client.create_project("x")


@pytest.mark.parametrize(
    "answer",
    ["uuid-9", {"data": "uuid-9"}, {"project_uuid": "uuid-9"}, {"data": {"uuid": "uuid-9"}}],
)
async def test_find_project_uuid_answer_shapes(
    client: ImagenClient, mocked: aioresponses, answer: Any
) -> None:
    mocked.get(f"{BASE}/projects/Smith%20wedding%2F2024/uuid", payload=answer)
    assert await client.find_project_uuid("Smith wedding/2024") == "uuid-9"


async def test_find_project_uuid_is_none_on_404_and_rejects_odd_answers(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects/gone/uuid", status=404, payload={"detail": "Not found"})
    mocked.get(f"{BASE}/projects/odd/uuid", payload={"id": 3})
    assert await client.find_project_uuid("gone") is None
    with pytest.raises(ImagenError, match="unexpected answer from Imagen to find_project_uuid"):
        await client.find_project_uuid("odd")


def _projects(*uuids: str, total: int) -> dict[str, Any]:
    return {
        "data": {
            "projects": [{"project_uuid": u, "status": "Completed"} for u in uuids],
            "pagination": {"total": total, "size": 100, "page": 0},
        }
    }


async def test_list_projects_returns_items_and_total(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects?page=2&size=10", payload=_projects("a", total=21))
    items, total = await client.list_projects(page=2, size=10)
    assert [p.project_uuid for p in items] == ["a"]
    assert total == 21


async def test_iter_projects_walks_every_page(client: ImagenClient, mocked: aioresponses) -> None:
    mocked.get(f"{BASE}/projects?page=0&size=100", payload=_projects("a", "b", total=3))
    mocked.get(f"{BASE}/projects?page=1&size=100", payload=_projects("c", total=3))
    assert [p.project_uuid async for p in client.iter_projects()] == ["a", "b", "c"]


async def test_iter_projects_stops_on_an_empty_page_despite_the_total(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects?page=0&size=100", payload=_projects("a", total=50))
    mocked.get(f"{BASE}/projects?page=1&size=100", payload=_projects(total=50))
    assert [p.project_uuid async for p in client.iter_projects()] == ["a"]


async def test_upload_links_sends_md5_only_when_given(
    client: ImagenClient, mocked: aioresponses
) -> None:
    url = f"{BASE}/projects/p1/get_temporary_upload_links"
    mocked.post(
        url,
        payload={
            "data": {
                "files_list": [
                    {"file_name": "A.CR2", "upload_link": "https://s3/a"},
                    {"file_name": "B.CR2", "upload_link": "https://s3/b"},
                ]
            }
        },
    )
    links = await client.upload_links("p1", [("A.CR2", "q1w2e3=="), ("B.CR2", None)])
    assert [(link.file_name, link.upload_link) for link in links] == [
        ("A.CR2", "https://s3/a"),
        ("B.CR2", "https://s3/b"),
    ]
    assert sent(mocked, "POST", url)[0].kwargs["json"] == {
        "files_list": [{"file_name": "A.CR2", "md5": "q1w2e3=="}, {"file_name": "B.CR2"}]
    }


async def test_upload_links_for_no_files_makes_no_call(client: ImagenClient) -> None:
    # No aioresponses here: a real request would fail to resolve the test host.
    assert await client.upload_links("p1", []) == []


async def test_start_edit_body_has_only_set_fields(
    client: ImagenClient, mocked: aioresponses
) -> None:
    url = f"{BASE}/projects/p1/edit"
    mocked.post(url, payload={"data": {"message": "Edit started"}})
    options = EditOptions(
        profile_key=5700,
        photography_type=PhotographyType.PORTRAITS,
        tools=frozenset({"smooth_skin"}),
    )
    await client.start_edit("p1", options)
    assert sent(mocked, "POST", url)[0].kwargs["json"] == {
        "profile_key": 5700,
        "photography_type": "PORTRAITS",
        "smooth_skin": True,
    }


async def test_start_export_accepts_204(client: ImagenClient, mocked: aioresponses) -> None:
    """An empty 204 is an accepted export: not an error, not a reason to send it again."""
    url = f"{BASE}/projects/p1/export"
    mocked.post(url, status=204)
    mocked.post(url, status=500)  # what a second, wrongful request would get

    assert await client.start_export("p1") is None
    assert len(sent(mocked, "POST", url)) == 1


@pytest.mark.parametrize(
    ("answer", "completed", "terminal"),
    [
        ({"data": {"status": "COMPLETED", "progress": 100}}, True, True),
        ({"status": "Completed"}, True, True),
        ({"data": {"status": "Failed", "details": "bad files"}}, False, True),
        ({"data": {"status": "In Progress", "progress": 42.5}}, False, False),
        ({"status": "Processing"}, False, False),
    ],
)
async def test_edit_and_export_status_casing(
    client: ImagenClient, mocked: aioresponses, answer: Any, completed: bool, terminal: bool
) -> None:
    mocked.get(f"{BASE}/projects/p1/edit/status", payload=answer)
    mocked.get(f"{BASE}/projects/p1/export/status", payload=answer)
    for status in (await client.edit_status("p1"), await client.export_status("p1")):
        assert status.is_completed is completed
        assert status.is_terminal is terminal


async def test_edit_status_without_edit_is_not_found(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(
        f"{BASE}/projects/p1/edit/status",
        status=404,
        payload={"error": {"message": "No edit found"}},
    )
    with pytest.raises(ImagenNotFound, match="No edit found"):
        await client.edit_status("p1")


async def test_download_links_with_upload_link_fallback(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(
        f"{BASE}/projects/p1/edit/get_temporary_download_links",
        payload={"data": {"files_list": [{"file_name": "A.xmp", "upload_link": "u"}]}},
    )
    mocked.get(
        f"{BASE}/projects/p1/export/get_temporary_download_links",
        payload={"files_list": [{"file_name": "A.jpg", "download_link": "d"}]},
    )
    assert [(x.file_name, x.download_link) for x in await client.edit_download_links("p1")] == [
        ("A.xmp", "u")
    ]
    assert [(x.file_name, x.download_link) for x in await client.export_download_links("p1")] == [
        ("A.jpg", "d")
    ]


async def test_sky_templates(client: ImagenClient, mocked: aioresponses) -> None:
    mocked.get(
        f"{BASE}/projects/sky_replacement/templates",
        payload={"data": {"templates": [{"id": 1, "is_default": True}]}},
    )
    assert await client.sky_templates() == [{"id": 1, "is_default": True}]


async def test_malformed_answers_raise_a_clear_error(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects/p1/edit/status", payload={"data": {"progress": 5}})
    mocked.get(f"{BASE}/profiles", body="<html>maintenance</html>")
    mocked.get(f"{BASE}/projects/p1/edit/get_temporary_download_links", payload={"files": []})
    with pytest.raises(ImagenError, match="unexpected answer from Imagen to edit_status: status"):
        await client.edit_status("p1")
    with pytest.raises(ImagenError, match="to list_profiles: not JSON"):
        await client.list_profiles()
    with pytest.raises(ImagenError, match="'files_list'"):
        await client.edit_download_links("p1")


# --- error mapping ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (
            401,
            {"detail": "Invalid API key"},
            ImagenAuthError,
            "Imagen rejected the API key (HTTP 401). Check IMAGEN_API_KEY.",
        ),
        (
            403,
            {"message": "Forbidden"},
            ImagenAuthError,
            "Imagen rejected the API key (HTTP 403). Check IMAGEN_API_KEY.",
        ),
        (
            400,
            {"error": {"message": 'File "A.CR2" appears 2 times.'}},
            ImagenBadRequest,
            'File "A.CR2" appears 2 times.',
        ),
        (
            400,
            {"detail": "Project name already exists"},
            ImagenBadRequest,
            "Project name already exists",
        ),
        (409, {"detail": "conflict"}, ImagenBadRequest, "conflict"),
        (
            422,
            {"detail": [{"loc": ["body", "profile_key"], "msg": "field required"}]},
            ImagenBadRequest,
            "body.profile_key: field required",
        ),
        (422, {"detail": {"reason": "odd"}}, ImagenBadRequest, '{"reason": "odd"}'),
        (400, "plain words", ImagenBadRequest, "plain words"),
        (404, {"detail": "Project not found"}, ImagenNotFound, "Project not found"),
        (418, {"error": {"message": "teapot"}}, ImagenError, "HTTP 418: teapot"),
    ],
)
async def test_error_statuses_map_to_error_kinds(
    client: ImagenClient,
    mocked: aioresponses,
    status: int,
    body: Any,
    kind: type[ImagenError],
    text: str,
) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    mocked.get(f"{BASE}/projects/p1", status=status, body=raw)
    with pytest.raises(kind) as caught:
        await client.get_project("p1")
    assert type(caught.value) is kind
    assert text in str(caught.value)
    assert caught.value.status == status
    assert len(sent(mocked, "GET", f"{BASE}/projects/p1")) == 1


async def test_long_raw_error_text_is_truncated(client: ImagenClient, mocked: aioresponses) -> None:
    mocked.get(f"{BASE}/profiles", status=400, body="x" * 5000)
    with pytest.raises(ImagenBadRequest) as caught:
        await client.list_profiles()
    assert len(str(caught.value)) < 400


# --- retries ---------------------------------------------------------------------------------


async def test_get_retries_on_503_then_succeeds(
    client: ImagenClient, mocked: aioresponses, retries: Retries
) -> None:
    mocked.get(f"{BASE}/profiles", status=503, payload={"detail": "busy"})
    mocked.get(f"{BASE}/profiles", payload=[PROFILE])
    assert len(await client.list_profiles()) == 1
    assert len(sent(mocked, "GET", f"{BASE}/profiles")) == 2
    assert [(r[0], r[1], r[2]) for r in retries] == [("list_profiles", 1, "HTTP 503: busy")]


async def test_retry_after_is_honoured(
    client: ImagenClient, mocked: aioresponses, retries: Retries
) -> None:
    loop = asyncio.get_running_loop()
    arrived: list[float] = []

    def seen(*_: Any, **__: Any) -> None:
        arrived.append(loop.time())

    mocked.get(f"{BASE}/profiles", status=429, headers={"Retry-After": "0.3"}, callback=seen)
    mocked.get(f"{BASE}/profiles", payload=[PROFILE], callback=seen)
    await client.list_profiles()
    assert retries[0][3] == pytest.approx(0.3)
    # Waited, not only said so: the server saw the second request that much later (a lower
    # bound only, which a busy machine cannot break).
    first, second = arrived
    assert second - first >= 0.3 * 0.95


@pytest.mark.parametrize(
    "failure",
    [TimeoutError(), aiohttp.ServerDisconnectedError(), aiohttp.ClientOSError(104, "reset")],
    ids=["timeout", "disconnected", "reset"],
)
async def test_get_retries_on_transport_errors(
    client: ImagenClient, mocked: aioresponses, failure: Exception
) -> None:
    mocked.get(f"{BASE}/projects/p1/export/status", exception=failure)
    mocked.get(f"{BASE}/projects/p1/export/status", payload={"status": "Pending"})
    assert (await client.export_status("p1")).status == "Pending"


async def test_exhausted_retries_raise_unavailable_naming_the_base_url(
    client: ImagenClient, mocked: aioresponses, retries: Retries
) -> None:
    mocked.get(f"{BASE}/profiles", status=502, body="Bad Gateway", repeat=True)
    with pytest.raises(ImagenUnavailable) as caught:
        await client.list_profiles()
    assert not isinstance(caught.value, ImagenAmbiguous)
    message = str(caught.value)
    assert BASE in message and "seems down" in message and "HTTP 502: Bad Gateway" in message
    assert len(sent(mocked, "GET", f"{BASE}/profiles")) == FAST.maximum_attempts
    assert len(retries) == FAST.maximum_attempts - 1


async def test_connection_refused_says_imagen_cannot_be_reached(
    session: aiohttp.ClientSession,
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v1"
    client = ImagenClient(session, base_url=base, api_key=KEY, retry=FAST)
    with pytest.raises(ImagenUnavailable) as caught:
        await client.list_profiles()
    message = str(caught.value)
    assert message.startswith(f"cannot reach Imagen at {base}: ")
    assert "Is the API (or `orchestrator sandbox`) running?" in message
    assert KEY not in message


async def test_state_changing_call_is_retried_when_no_connection_was_made(
    session: aiohttp.ClientSession,
) -> None:
    retries: Retries = []
    client = ImagenClient(
        session,
        base_url=f"http://127.0.0.1:{closed_port()}/v1",
        api_key=KEY,
        retry=FAST,
        on_retry=lambda *e: retries.append(e),
    )
    with pytest.raises(ImagenUnavailable) as caught:
        await client.create_project("x")
    assert not isinstance(caught.value, ImagenAmbiguous)
    assert [r[:2] for r in retries] == [("create_project", 1), ("create_project", 2)]


@pytest.mark.parametrize(
    ("mock", "reason"),
    [
        ({"status": 500, "body": "boom"}, "HTTP 500: boom"),
        ({"status": 503, "body": "down"}, "HTTP 503: down"),
        ({"exception": TimeoutError()}, "no answer before the timeout"),
        ({"exception": aiohttp.ServerDisconnectedError()}, "Server disconnected"),
    ],
    ids=["500", "503", "timeout", "dropped"],
)
@pytest.mark.parametrize("call", ["create_project", "start_edit", "start_export"])
async def test_state_changing_calls_are_not_retried_when_ambiguous(
    client: ImagenClient,
    mocked: aioresponses,
    retries: Retries,
    call: str,
    mock: dict[str, Any],
    reason: str,
) -> None:
    path = {
        "create_project": "/projects/",
        "start_edit": "/projects/p1/edit",
        "start_export": "/projects/p1/export",
    }[call]
    mocked.post(BASE + path, **mock)
    mocked.post(BASE + path, payload={"project_uuid": "never-reached"})
    with pytest.raises(ImagenAmbiguous) as caught:
        if call == "create_project":
            await client.create_project("x")
        elif call == "start_edit":
            await client.start_edit("p1", EditOptions(profile_key=1))
        else:
            await client.start_export("p1")
    assert reason in str(caught.value)
    assert call in str(caught.value)
    assert len(sent(mocked, "POST", BASE + path)) == 1
    assert retries == []


async def test_state_changing_call_is_retried_on_429(
    client: ImagenClient, mocked: aioresponses, retries: Retries
) -> None:
    mocked.post(f"{BASE}/projects/", status=429, body="slow down")
    mocked.post(f"{BASE}/projects/", payload={"data": {"project_uuid": "u-1"}})
    mocked.post(f"{BASE}/projects/p1/edit", status=429)
    mocked.post(f"{BASE}/projects/p1/edit", payload={"message": "ok"})
    assert await client.create_project("x") == "u-1"
    await client.start_edit("p1", EditOptions(profile_key=1))
    assert [r[:2] for r in retries] == [("create_project", 1), ("start_edit", 1)]


async def test_upload_links_post_is_retried_on_500(
    client: ImagenClient, mocked: aioresponses
) -> None:
    url = f"{BASE}/projects/p1/get_temporary_upload_links"
    mocked.post(url, status=500)
    mocked.post(url, payload={"files_list": [{"file_name": "A.jpg", "upload_link": "u"}]})
    assert len(await client.upload_links("p1", [("A.jpg", None)])) == 1
    assert len(sent(mocked, "POST", url)) == 2


# --- the API key stays secret ----------------------------------------------------------------


def _texts(exc: BaseException) -> Iterator[str]:
    """str and repr of an exception and of every exception a traceback would show with it."""
    current: BaseException | None = exc
    while current is not None:
        yield str(current)
        yield repr(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


@pytest.mark.parametrize(
    ("method", "mock"),
    [
        ("get", {"status": 401, "body": f"bad key {KEY}"}),
        ("get", {"status": 400, "payload": {"error": {"message": f"key {KEY} lacks scope"}}}),
        ("get", {"status": 404, "payload": {"detail": [{"loc": [KEY], "msg": KEY}]}}),
        ("get", {"status": 418, "body": KEY}),
        ("get", {"status": 503, "body": f"overloaded for {KEY}", "repeat": True}),
        ("get", {"status": 200, "payload": {"data": {"status": 1, "progress": KEY}}}),
        ("get", {"status": 200, "body": f"not json {KEY}"}),
        ("get", {"status": 307, "headers": {"Location": f"https://evil.test/?k={KEY}"}}),
        ("post", {"status": 500, "body": f"crash {KEY}"}),
        ("post", {"status": 200, "payload": {"echo": KEY}}),
    ],
)
async def test_api_key_never_appears_in_errors(
    client: ImagenClient,
    mocked: aioresponses,
    retries: Retries,
    method: str,
    mock: dict[str, Any],
) -> None:
    mocked.add(re.compile(r".*"), method=method.upper(), **mock)
    with pytest.raises(ImagenError) as caught:
        if method == "get":
            await client.edit_status("p1")
        else:
            await client.create_project("x")
    for text in _texts(caught.value):
        assert KEY not in text
    for event in retries:
        assert KEY not in event[2]
    assert KEY not in repr(client)


# --- on the wire, against a real local server ------------------------------------------------


async def test_wire_headers_body_quoting_and_no_redirects(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, str, str | None, str | None, bytes]] = []

    async def record(request: web.Request) -> web.StreamResponse:
        seen.append(
            (
                request.method,
                request.raw_path,
                request.headers.get("Content-Type"),
                request.headers.get("x-api-key"),
                await request.read(),
            )
        )
        if request.raw_path.endswith("/uuid"):
            return web.json_response({"data": {"project_uuid": "u-7"}})
        if request.raw_path == "/v1/profiles":
            raise web.HTTPTemporaryRedirect("/elsewhere")
        return web.json_response({"data": {"project_uuid": "u-8"}})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", record)
    async with TestServer(app) as server:
        client = ImagenClient(
            session, base_url=str(server.make_url("/v1")), api_key=KEY, retry=FAST
        )
        assert await client.find_project_uuid("a/b c?") == "u-7"
        assert await client.create_project("Smith") == "u-8"
        with pytest.raises(ImagenError, match="HTTP 307") as caught:
            await client.list_profiles()
    assert not isinstance(caught.value, (ImagenBadRequest, ImagenUnavailable))
    assert seen[0][:2] == ("GET", "/v1/projects/a%2Fb%20c%3F/uuid")
    assert seen[1][:4] == ("POST", "/v1/projects/", "application/json", KEY)
    assert json.loads(seen[1][4]) == {"name": "Smith"}
    assert [s[1] for s in seen] == [
        "/v1/projects/a%2Fb%20c%3F/uuid",
        "/v1/projects/",
        "/v1/profiles",
    ]
    assert all(s[3] == KEY for s in seen)


# --- the root error --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "root"),
    [
        (ImagenUnavailable, Transient),
        (ImagenAmbiguous, Transient),
        (ImagenAuthError, CredentialsRefused),
        (ImagenBadRequest, Refused),
        (ImagenNotFound, Refused),
        (ImagenMalformedAnswer, Refused),
    ],
)
def test_imagen_errors_are_root_errors_of_one_meaning(
    kind: type[ImagenError], root: type[OrchestratorError]
) -> None:
    assert issubclass(kind, root)
    assert issubclass(kind, ImagenError)
    assert issubclass(kind, Transient) != issubclass(kind, Refused)


async def test_a_malformed_answer_is_a_refused_imagen_error(
    client: ImagenClient, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/projects/p1/edit/status", payload={"data": {"progress": 5}})
    with pytest.raises(ImagenMalformedAnswer) as caught:
        await client.edit_status("p1")
    assert isinstance(caught.value, Refused)


@pytest.mark.parametrize("call", ["create_project", "start_edit", "start_export"])
async def test_an_oversized_success_to_a_state_changing_call_is_ambiguous(
    client: ImagenClient, mocked: aioresponses, call: str
) -> None:
    path = {
        "create_project": "/projects/",
        "start_edit": "/projects/p1/edit",
        "start_export": "/projects/p1/export",
    }[call]
    mocked.post(BASE + path, body="{}", headers={"Content-Length": str(10**9)})
    with pytest.raises(ImagenAmbiguous, match="longer than 33,554,432 bytes") as caught:
        if call == "create_project":
            await client.create_project("x")
        elif call == "start_edit":
            await client.start_edit("p1", EditOptions(profile_key=1))
        else:
            await client.start_export("p1")
    assert caught.value.status == 200
    assert len(sent(mocked, "POST", BASE + path)) == 1
