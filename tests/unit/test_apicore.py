"""The HTTP API client core alone, against mocked HTTP: auth, retries, limits, caps, secrets."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from aioresponses import aioresponses
from yarl import URL

from orchestrator.apicore.auth import ApiKeyHeader, Auth, BasicAuth, BearerToken
from orchestrator.apicore.client import ApiClient, Call, RateLimit
from orchestrator.apicore.errors import (
    AnswerTooLarge,
    ApiAmbiguous,
    ApiBadRequest,
    ApiCredentialsRefused,
    ApiError,
    ApiNotFound,
    ApiRefused,
    ApiUnavailable,
    MalformedAnswer,
)
from orchestrator.apicore.scrub import Scrubber
from orchestrator.errors import CredentialsRefused, OrchestratorError, Refused, Transient
from orchestrator.retry import RetryPolicy, parse_retry_after
from tests.mock_http import Mocked

BASE = "http://api.test/v2"
KEY = "key-SECRET+/0123456789"
USER = "acc_USER_9876543210"
PASSWORD = "pw-SECRET/+=abcdefgh"
TOKEN = "tok.SECRET-eyJhbGciOi"
FAST = RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=3)

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


def make(
    session: aiohttp.ClientSession,
    retries: Retries | None = None,
    *,
    auth: Auth | None = None,
    **options: Any,
) -> ApiClient:
    return ApiClient(
        session,
        service="Svc",
        base_url=BASE + "/",
        auth=auth or ApiKeyHeader(KEY),
        retry=options.pop("retry", FAST),
        credentials_hint="Check SVC_KEY.",
        unreachable_hint="Is Svc up?",
        on_retry=None if retries is None else (lambda *event: retries.append(event)),
        **options,
    )


def sent(mocked: aioresponses, method: str, url: str) -> list[Any]:
    return list(mocked.requests.get((method, URL(url)), []))


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def get(path: str = "/things", **fields: Any) -> Call:
    return Call(name="get_things", method="GET", path=path, **fields)


def post(path: str = "/things", **fields: Any) -> Call:
    return Call(name="make_thing", method="POST", path=path, **fields)


# --- auth strategies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("auth", "header", "value"),
    [
        (ApiKeyHeader(KEY), "x-api-key", KEY),
        (ApiKeyHeader(KEY, header="X-Custom-Key"), "X-Custom-Key", KEY),
        (
            BasicAuth(USER, PASSWORD),
            "Authorization",
            "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        ),
        (BearerToken(TOKEN), "Authorization", f"Bearer {TOKEN}"),
    ],
    ids=["api-key", "custom-header", "basic", "bearer"],
)
async def test_auth_strategies_put_the_secret_in_their_header_only(
    session: aiohttp.ClientSession, mocked: aioresponses, auth: Auth, header: str, value: str
) -> None:
    mocked.get(f"{BASE}/things?page=1", payload={"ok": True})
    client = make(session, auth=auth)
    assert await client.send_json(get(params={"page": 1})) == {"ok": True}
    (request,) = sent(mocked, "GET", f"{BASE}/things?page=1")
    assert request.kwargs["headers"] == {header: value}
    assert request.kwargs["params"] == {"page": 1}
    assert request.kwargs["allow_redirects"] is False
    for secret in auth.secrets():
        assert secret not in repr(auth)
        assert secret not in repr(client)
        assert secret not in BASE


async def test_a_secret_holding_a_line_break_is_refused_before_anything_is_sent(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    broken = KEY + "\r\nX-Injected: 1"
    client = make(session, auth=ApiKeyHeader(broken))
    with pytest.raises(ApiCredentialsRefused) as caught:
        await client.send(get())
    assert "line break" in str(caught.value) and "Check SVC_KEY." in str(caught.value)
    assert KEY not in str(caught.value)
    assert mocked.requests == {}


# --- the root error --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mock", "call", "kind", "root"),
    [
        ({"status": 503, "body": "busy", "repeat": True}, get(), ApiUnavailable, Transient),
        ({"status": 500, "body": "boom"}, post(), ApiAmbiguous, Transient),
        ({"status": 401}, get(), ApiCredentialsRefused, CredentialsRefused),
        ({"status": 403}, get(), ApiCredentialsRefused, CredentialsRefused),
        ({"status": 400, "payload": {"detail": "no"}}, get(), ApiBadRequest, Refused),
        ({"status": 404}, get(), ApiNotFound, Refused),
        ({"status": 410, "body": "gone"}, get(), ApiRefused, Refused),
        ({"status": 302, "headers": {"Location": "/x"}}, get(), ApiRefused, Refused),
        ({"status": 200, "body": "<html>"}, get(), MalformedAnswer, Refused),
    ],
)
async def test_every_failure_is_one_of_the_root_errors_with_its_status(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    mock: dict[str, Any],
    call: Call,
    kind: type[ApiError],
    root: type[OrchestratorError],
) -> None:
    mocked.add(re.compile(r".*"), method=call.method, **mock)
    with pytest.raises(kind) as caught:
        await make(session).send_json(call)
    assert isinstance(caught.value, root)
    # Exactly one of the two meanings the engine acts on.
    assert isinstance(caught.value, Transient) != isinstance(caught.value, Refused)
    assert caught.value.call == call.name
    expected = None if kind is ApiUnavailable else mock["status"]
    assert caught.value.status == expected


async def test_credentials_error_names_the_strategy_and_the_hint(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/things", status=401, repeat=True)
    with pytest.raises(
        ApiCredentialsRefused,
        match=r"^Svc rejected the token \(HTTP 401\)\. "
        r"Check SVC_KEY\.$",
    ):
        await make(session, auth=BearerToken(TOKEN)).send(get())
    with pytest.raises(ApiCredentialsRefused, match="rejected the credentials"):
        await make(session, auth=BasicAuth(USER, PASSWORD)).send(get())


# --- retries as data -------------------------------------------------------------------------


async def test_a_call_carries_its_own_retry_policy(
    session: aiohttp.ClientSession, mocked: aioresponses, retries: Retries
) -> None:
    mocked.get(f"{BASE}/things", status=503, repeat=True)
    mocked.get(f"{BASE}/once", status=503, repeat=True)
    client = make(session, retries)
    with pytest.raises(ApiUnavailable, match="failed 3 times"):
        await client.send(get())
    with pytest.raises(ApiUnavailable, match="failed 1 times"):
        await client.send(get("/once", retry=RetryPolicy(maximum_attempts=1)))
    assert len(sent(mocked, "GET", f"{BASE}/things")) == 3
    assert len(sent(mocked, "GET", f"{BASE}/once")) == 1
    assert [r[:2] for r in retries] == [("get_things", 1), ("get_things", 2)]


async def test_which_statuses_are_retried_is_part_of_the_policy(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    patient = RetryPolicy(
        initial_interval=0.001,
        maximum_interval=0.001,
        maximum_attempts=3,
        retryable_statuses=frozenset({409}),
    )
    mocked.get(f"{BASE}/things", status=409, body="locked")
    mocked.get(f"{BASE}/things", payload=[1])
    mocked.get(f"{BASE}/other", status=503, body="busy")
    client = make(session, retry=patient)
    assert await client.send_json(get()) == [1]
    with pytest.raises(ApiRefused, match="HTTP 503: busy"):
        await client.send(get("/other"))
    assert len(sent(mocked, "GET", f"{BASE}/other")) == 1


async def test_retry_after_as_an_http_date_is_honoured(
    session: aiohttp.ClientSession, mocked: aioresponses, retries: Retries
) -> None:
    # A date in the past: honoured as "now", so the test does not wait.
    mocked.get(
        f"{BASE}/things", status=429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}
    )
    mocked.get(f"{BASE}/things", status=503, headers={"Retry-After": "0.04"})
    mocked.get(f"{BASE}/things", payload={})
    await make(
        session,
        retries,
        retry=RetryPolicy(initial_interval=0.0, maximum_interval=0.0, maximum_attempts=3),
    ).send(get())
    assert [r[3] for r in retries] == [0.0, pytest.approx(0.04)]


def test_parse_retry_after_reads_seconds_and_dates() -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:30 -0000", now=now) == 30.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now=now) == 0.0
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


# --- no blind retry of calls that are not idempotent -----------------------------------------


@pytest.mark.parametrize(
    ("mock", "reason"),
    [
        ({"status": 500, "body": "boom"}, "HTTP 500: boom"),
        ({"status": 502, "body": "bad gateway"}, "HTTP 502: bad gateway"),
        ({"status": 503, "headers": {"Retry-After": "0"}, "body": "down"}, "HTTP 503: down"),
        ({"exception": TimeoutError()}, "no answer before the timeout"),
        ({"exception": aiohttp.ServerDisconnectedError()}, "Server disconnected"),
        ({"exception": aiohttp.ClientOSError(104, "Connection reset by peer")}, "reset by peer"),
        ({"exception": aiohttp.ClientPayloadError("cut short")}, "cut short"),
    ],
    ids=["500", "502", "503", "timeout", "dropped", "reset", "payload"],
)
async def test_a_post_that_fails_ambiguously_is_never_retried(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    retries: Retries,
    mock: dict[str, Any],
    reason: str,
) -> None:
    mocked.post(f"{BASE}/things", **mock)
    mocked.post(f"{BASE}/things", payload={"never": "reached"})
    with pytest.raises(ApiAmbiguous) as caught:
        await make(session, retries).send(post())
    assert reason in str(caught.value)
    assert "make_thing may or may not have taken effect at Svc" in str(caught.value)
    assert len(sent(mocked, "POST", f"{BASE}/things")) == 1
    assert retries == []


@pytest.mark.parametrize(
    "call",
    [
        Call(name="put", method="PUT", path="/things"),
        Call(name="delete", method="DELETE", path="/things"),
        Call(name="search", method="POST", path="/things", idempotent=True),
    ],
    ids=["put", "delete", "idempotent-post"],
)
async def test_idempotent_calls_are_retried_after_ambiguous_failures(
    session: aiohttp.ClientSession, mocked: aioresponses, call: Call
) -> None:
    mocked.add(f"{BASE}/things", method=call.method, exception=aiohttp.ServerDisconnectedError())
    mocked.add(f"{BASE}/things", method=call.method, status=500)
    mocked.add(f"{BASE}/things", method=call.method, payload={"ok": 1})
    assert await make(session).send_json(call) == {"ok": 1}
    assert len(sent(mocked, call.method, f"{BASE}/things")) == 3


async def test_a_patch_is_not_idempotent_unless_the_call_says_so(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.patch(f"{BASE}/things", status=502, repeat=True)
    with pytest.raises(ApiAmbiguous):
        await make(session).send(Call(name="patch", method="PATCH", path="/things"))
    assert len(sent(mocked, "PATCH", f"{BASE}/things")) == 1


async def test_a_post_that_was_never_sent_is_retried(
    session: aiohttp.ClientSession, mocked: aioresponses, retries: Retries
) -> None:
    mocked.post(f"{BASE}/things", exception=aiohttp.ConnectionTimeoutError("connect timed out"))
    mocked.post(f"{BASE}/things", status=429, body="slow down")
    mocked.post(f"{BASE}/things", payload={"id": 7})
    assert await make(session, retries).send_json(post()) == {"id": 7}
    assert [r[2] for r in retries] == ["connect timed out", "HTTP 429: slow down"]


async def test_a_post_to_a_closed_port_is_retried_and_then_unreachable(
    session: aiohttp.ClientSession, retries: Retries
) -> None:
    base = f"http://127.0.0.1:{closed_port()}/v2"
    client = ApiClient(
        session,
        service="Svc",
        base_url=base,
        auth=BearerToken(TOKEN),
        retry=FAST,
        unreachable_hint="Is Svc up?",
        on_retry=lambda *event: retries.append(event),
    )
    with pytest.raises(ApiUnavailable) as caught:
        await client.send(post())
    assert not isinstance(caught.value, ApiAmbiguous)
    assert str(caught.value).startswith(f"cannot reach Svc at {base}: ")
    assert str(caught.value).endswith("Is Svc up?")
    assert [r[:2] for r in retries] == [("make_thing", 1), ("make_thing", 2)]


# --- rate limits -----------------------------------------------------------------------------


async def test_a_rate_limit_holds_calls_of_its_endpoint_class_only(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/tags", payload={}, repeat=True)
    mocked.get(f"{BASE}/other", payload={}, repeat=True)
    client = make(session, limits={"tags": RateLimit(rate=1, per=3600)})
    await client.send(get("/tags", limit="tags"))
    held = asyncio.create_task(client.send(get("/tags", limit="tags")))
    try:
        # Calls of another class (and without a class) go through while the second one waits.
        await client.send(get("/other"))
        await client.send(get("/other"))
        assert not held.done()
        assert len(sent(mocked, "GET", f"{BASE}/tags")) == 1
        assert len(sent(mocked, "GET", f"{BASE}/other")) == 2
    finally:
        held.cancel()
    with pytest.raises(asyncio.CancelledError):
        await held
    assert len(sent(mocked, "GET", f"{BASE}/tags")) == 1


async def test_a_rate_limit_lets_calls_through_at_its_rate(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    loop = asyncio.get_running_loop()
    arrived: list[float] = []
    mocked.get(
        f"{BASE}/tags",
        payload={},
        repeat=True,
        callback=lambda *_, **__: arrived.append(loop.time()),
    )
    client = make(session, limits={"tags": RateLimit(rate=5, per=0.25)})
    started = loop.time()
    await asyncio.gather(*(client.send(get("/tags", limit="tags")) for _ in range(10)))
    # A burst of 5, then 5 more drip in over one period: never faster, whatever the machine.
    assert loop.time() - started >= 0.2
    assert len(sent(mocked, "GET", f"{BASE}/tags")) == 10
    # And each call in turn: the n-th after the burst no sooner than n fifths of a period
    # (lower bounds only: a busy machine delays calls, it never hurries them).
    for n, at in enumerate(sorted(arrived)[5:], start=1):
        assert at - started >= 0.9 * n * 0.25 / 5, (n, at - started)


async def test_a_call_naming_an_unknown_limit_is_a_programming_error(
    session: aiohttp.ClientSession,
) -> None:
    with pytest.raises(ValueError, match="names rate limit 'tagz'"):
        await make(session, limits={"tags": RateLimit(rate=1)}).send(get(limit="tagz"))


# --- answers: size cap and safe JSON ---------------------------------------------------------


async def test_an_answer_over_the_cap_is_refused(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/things", body=b"[" + b"1," * 600 + b"1]", repeat=True)
    client = make(session, max_answer_bytes=1000)
    with pytest.raises(AnswerTooLarge, match="longer than 1,000 bytes, so it was not read") as c:
        await client.send(get())
    assert isinstance(c.value, Refused) and c.value.status == 200
    assert len(await client.send_json(get(max_bytes=2000))) == 601


async def test_a_declared_length_over_the_cap_is_refused_before_reading(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/things", body=b"{}", headers={"Content-Length": str(10**9)})
    with pytest.raises(AnswerTooLarge):
        await make(session).send(get())


async def test_an_error_answer_is_read_only_as_far_as_needed(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    mocked.get(f"{BASE}/things", status=400, body="why " * 30_000)
    with pytest.raises(ApiBadRequest) as caught:
        await make(session).send(get())
    assert len(str(caught.value)) < 400 and str(caught.value).endswith("…")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ("[" * 100_000, "JSON nested deeper than 64 levels"),
        ("[" * 65 + "]" * 65, "JSON nested deeper than 64 levels"),
        ('{"a": [1, 2', "not JSON: "),
        ("", "not JSON: ''"),
    ],
    ids=["very-deep", "just-too-deep", "truncated", "empty"],
)
async def test_malformed_json_is_a_refused_answer(
    session: aiohttp.ClientSession, mocked: aioresponses, body: str, problem: str
) -> None:
    mocked.get(f"{BASE}/things", body=body)
    with pytest.raises(MalformedAnswer) as caught:
        await make(session).send_json(get())
    assert f"unexpected answer from Svc to get_things: {problem}" in str(caught.value)
    assert f"is {BASE} the Svc API?" in str(caught.value)


async def test_brackets_inside_strings_do_not_count_as_nesting(
    session: aiohttp.ClientSession, mocked: aioresponses
) -> None:
    deep = "[" * 63 + "]" * 63  # 64 levels with the object around it: the most accepted
    text = json.dumps({"s": "[[[[" * 100 + '\\"]]', "deep": json.loads(deep)})
    mocked.get(f"{BASE}/things", body=text)
    assert await make(session).send_json(get()) == json.loads(text)


# --- secrets never in error text -------------------------------------------------------------


def _texts(exc: BaseException) -> Iterator[str]:
    """str and repr of an exception and of every exception a traceback would show with it."""
    current: BaseException | None = exc
    while current is not None:
        yield str(current)
        yield repr(current)
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__
        )


def _echoes(secret: str) -> list[str]:
    """The forms in which a server might echo a secret back."""
    encoded = quote(secret, safe="")
    lower = re.sub("%[0-9A-F]{2}", lambda escape: escape.group().lower(), encoded)
    return [
        secret,
        encoded,
        lower,
        base64.b64encode(secret.encode()).decode(),
        json.dumps(secret)[1:-1],
    ]


AUTHS = {
    "api-key": ApiKeyHeader(KEY),
    "basic": BasicAuth(USER, PASSWORD),
    "bearer": BearerToken(TOKEN),
}


@pytest.mark.parametrize("echo", range(5), ids=["raw", "url", "url-lower", "base64", "json"])
@pytest.mark.parametrize("strategy", list(AUTHS))
@pytest.mark.parametrize(
    ("method", "mock"),
    [
        ("GET", {"status": 401, "body": "bad {s}"}),
        ("GET", {"status": 400, "body": '{{"error": {{"message": "{s} lacks scope"}}}}'}),
        ("GET", {"status": 404, "body": '{{"detail": [{{"loc": ["{s}"], "msg": "{s}"}}]}}'}),
        ("GET", {"status": 418, "body": "{s}"}),
        ("GET", {"status": 503, "body": "overloaded for {s}", "repeat": True}),
        ("GET", {"status": 200, "body": "not json {s}"}),
        ("GET", {"status": 200, "body": "[" * 100 + "{s}"}),
        ("GET", {"status": 307, "headers": {"Location": "https://evil.test/?k={s}"}}),
        ("GET", {"exception": "ClientOSError", "repeat": True}),
        ("POST", {"status": 500, "body": "crash {s}"}),
        ("POST", {"exception": "ClientOSError"}),
    ],
    ids=[
        "401",
        "400",
        "404",
        "418",
        "503",
        "not-json",
        "deep",
        "redirect",
        "transport",
        "post-500",
        "post-transport",
    ],
)
async def test_no_secret_appears_in_any_error(
    session: aiohttp.ClientSession,
    mocked: aioresponses,
    retries: Retries,
    method: str,
    mock: dict[str, Any],
    strategy: str,
    echo: int,
) -> None:
    auth = AUTHS[strategy]
    for secret in auth.secrets():
        text = _echoes(secret)[echo]
        options = {
            name: value.format(s=text) if isinstance(value, str) else value
            for name, value in mock.items()
        }
        if "headers" in options:
            options["headers"] = {"Location": mock["headers"]["Location"].format(s=text)}
        if options.get("exception") == "ClientOSError":
            options["exception"] = aiohttp.ClientOSError(104, f"reset talking to {text}")
        mocked.add(re.compile(r".*"), method=method, **options)
        client = make(session, retries, auth=auth)
        with pytest.raises(ApiError) as caught:
            await client.send_json(Call(name="c", method=method, path="/things"))
        for shown in [*_texts(caught.value), *(event[2] for event in retries)]:
            for form in _echoes(secret):
                assert form not in shown
        mocked.clear()
        retries.clear()


async def test_malformed_shape_text_is_scrubbed(session: aiohttp.ClientSession) -> None:
    error = make(session, auth=BasicAuth(USER, PASSWORD)).malformed(get(), f"id: {PASSWORD}")
    assert str(error) == "unexpected answer from Svc to get_things: id: [redacted]"
    assert isinstance(error, MalformedAnswer)


def test_clipping_never_leaves_the_start_of_a_secret_visible() -> None:
    scrubber = Scrubber([KEY])
    for offset in range(280, 300):
        text = "x" * offset + KEY + "y" * 50
        shown = scrubber.clip(text, limit=300)
        assert len(shown) <= 301
        assert KEY[:5] not in shown
    assert scrubber.clip(f"{KEY} {KEY}", limit=300) == "[redacted] [redacted]"
    assert Scrubber([""]).clip("plain") == "plain"
    assert KEY not in repr(scrubber)
