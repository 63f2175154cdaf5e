"""How transfers react to storage's answers: retries, Retry-After, fresh links, throttling."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aioresponses import CallbackResult, aioresponses

from orchestrator.retry import RetryPolicy
from orchestrator.transfer.attempts import MAX_FRESH_LINKS
from orchestrator.transfer.errors import TransferFailed, VerificationFailed
from orchestrator.transfer.hashing import md5_base64
from orchestrator.transfer.manager import Transfers, TransferSettings, make_session
from tests.mock_http import Mocked, MockResponse

OBJECT = "https://bucket.example.com/shoot/A.CR2"
OBJECT_PATTERN = re.compile(r"^https://bucket\.example\.com/shoot/A\.CR2(\?.*)?$")
DATA = b"raw photo bytes " * 1000


class Links:
    """A LinkSource that counts how often it is asked, and for fresh links."""

    def __init__(self) -> None:
        self.calls: list[bool] = []

    async def __call__(self, refresh: bool) -> str:
        self.calls.append(refresh)
        return f"{OBJECT}?X-Amz-Signature=secret{len(self.calls)}"


class Sleeps:
    """Stands in for asyncio.sleep and remembers the delays asked for."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def quick(attempts: int = 3) -> RetryPolicy:
    return RetryPolicy(initial_interval=0.001, maximum_interval=0.001, maximum_attempts=attempts)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    session = make_session(TransferSettings())
    yield session
    await session.close()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "A.CR2"
    path.write_bytes(DATA)
    return path


def s3_error(code: str, message: str) -> str:
    return f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>{message}</Message></Error>"


def make(
    session: aiohttp.ClientSession,
    attempts: int = 3,
    retries: list[tuple[str, int, str, float]] | None = None,
    sleeps: Sleeps | None = None,
) -> Transfers:
    def on_retry(name: str, attempt: int, reason: str, delay: float) -> None:
        if retries is not None:
            retries.append((name, attempt, reason, delay))

    return Transfers(
        session,
        TransferSettings(retry=quick(attempts)),
        on_retry=on_retry,
        sleep=sleeps or Sleeps(),
    )


def names_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir())


def requests_to(mock: aioresponses, method: str) -> list[Any]:
    return [call for (verb, _), calls in mock.requests.items() if verb == method for call in calls]


async def test_upload_retries_after_slowdown_and_lowers_concurrency(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    retries: list[tuple[str, int, str, float]] = []
    transfers = make(session, retries=retries)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=503, body=s3_error("SlowDown", "Reduce your rate"))
        mock.put(OBJECT_PATTERN, status=200, headers={"ETag": '"x"'})
        result = await transfers.upload(photo, link=Links(), size=len(DATA), md5=None)
    assert result.attempts == 2
    assert result.etag == '"x"'
    assert len(retries) == 1
    name, attempt, reason, _ = retries[0]
    assert (name, attempt) == ("A.CR2", 1)
    assert "SlowDown" in reason and "Reduce your rate" in reason
    assert transfers.limiter.limit == 4  # halved from 8


async def test_retry_after_is_honoured(session: aiohttp.ClientSession, photo: Path) -> None:
    sleeps = Sleeps()
    transfers = make(session, sleeps=sleeps)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=429, headers={"Retry-After": "7"})
        mock.put(OBJECT_PATTERN, status=200)
        result = await transfers.upload(photo, link=Links(), size=len(DATA), md5=None)
    assert result.attempts == 2
    assert sleeps.delays == [7.0]


async def test_expired_link_is_refreshed_without_using_an_attempt(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    links = Links()
    transfers = make(session, attempts=1)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=403, body=s3_error("AccessDenied", "Request has expired"))
        mock.put(OBJECT_PATTERN, status=403, body=s3_error("AccessDenied", "Request has expired"))
        mock.put(OBJECT_PATTERN, status=200)
        result = await transfers.upload(photo, link=links, size=len(DATA), md5=None)
        sent_to = [str(url) for (verb, url) in mock.requests if verb == "PUT"]
    assert result.attempts == 1
    assert links.calls == [False, True, True]
    assert len(sent_to) == 3  # each try went to the link it had just been given


async def test_a_link_that_never_works_fails_the_file(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    links = Links()
    transfers = make(session)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=403, repeat=True)
        with pytest.raises(TransferFailed) as caught:
            await transfers.upload(photo, link=links, size=len(DATA), md5=None)
    assert links.calls.count(True) == MAX_FRESH_LINKS
    assert "secret" not in str(caught.value)
    assert str(caught.value).count("A.CR2") == 1  # issue 15: not "A.CR2: A.CR2: …"
    assert transfers.limiter.in_flight == 0


async def test_bad_request_fails_at_once_with_the_servers_message(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    transfers = make(session)
    with Mocked() as mock:
        mock.put(
            OBJECT_PATTERN,
            status=400,
            body=s3_error("InvalidArgument", "Unsupported header 'x-foo'"),
        )
        with pytest.raises(TransferFailed) as caught:
            await transfers.upload(photo, link=Links(), size=len(DATA), md5=None)
        assert len(requests_to(mock, "PUT")) == 1
    assert "Unsupported header 'x-foo'" in caught.value.reason
    assert "InvalidArgument" in caught.value.reason


async def test_bad_digest_is_retried_once_then_fails(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    transfers = make(session, attempts=5)
    with Mocked() as mock:
        mock.put(
            OBJECT_PATTERN,
            status=400,
            repeat=True,
            body=s3_error("BadDigest", "The Content-MD5 you specified did not match"),
        )
        with pytest.raises(TransferFailed, match="BadDigest") as caught:
            await transfers.upload(
                photo, link=Links(), size=len(DATA), md5=hashlib.md5(DATA).digest()
            )
        assert len(requests_to(mock, "PUT")) == 2
    assert "twice" in caught.value.reason


async def test_put_headers_carry_content_md5_and_no_api_key(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    seen: dict[str, Any] = {}

    def capture(url: Any, **kwargs: Any) -> CallbackResult:
        seen.update(kwargs)
        return CallbackResult(status=200, response_class=MockResponse)

    transfers = make(session)
    digest = hashlib.md5(DATA).digest()
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, callback=capture)
        await transfers.upload(photo, link=Links(), size=len(DATA), md5=digest)
    headers = {key.lower(): value for key, value in seen["headers"].items()}
    assert headers["content-md5"] == md5_base64(digest)
    assert headers["content-length"] == str(len(DATA))
    assert headers["content-type"] == ""
    assert "x-api-key" not in headers
    assert seen["allow_redirects"] is False


async def test_connection_errors_are_retried(session: aiohttp.ClientSession, photo: Path) -> None:
    retries: list[tuple[str, int, str, float]] = []
    transfers = make(session, retries=retries)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, exception=aiohttp.ServerDisconnectedError())
        mock.put(OBJECT_PATTERN, exception=TimeoutError())
        mock.put(OBJECT_PATTERN, status=200)
        result = await transfers.upload(photo, link=Links(), size=len(DATA), md5=None)
    assert result.attempts == 3
    assert "ServerDisconnectedError" in retries[0][2]
    assert "timed out" in retries[1][2]
    assert transfers.limiter.limit == 8  # network trouble is not throttling


async def test_exhausted_retries_fail_the_file_without_leaking_the_link(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    transfers = make(session, attempts=3)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=500, repeat=True)
        with pytest.raises(TransferFailed, match="gave up after 3 attempts") as caught:
            await transfers.upload(photo, link=Links(), size=len(DATA), md5=None)
        assert len(requests_to(mock, "PUT")) == 3
    assert "secret" not in str(caught.value)


async def test_download_retries_then_writes_the_file(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    transfers = make(session)
    etag = f'"{hashlib.md5(DATA).hexdigest()}"'
    with Mocked() as mock:
        mock.get(OBJECT_PATTERN, status=502)
        mock.get(OBJECT_PATTERN, status=200, body=DATA, headers={"ETag": etag})
        result = await transfers.download(
            link=Links(), folder=tmp_path / "edited", file_name="A.xmp"
        )
    assert result.attempts == 2
    assert (tmp_path / "edited" / "A.xmp").read_bytes() == DATA
    assert names_in(tmp_path / "edited") == ["A.xmp"]


async def test_download_not_found_fails_at_once(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    transfers = make(session)
    with Mocked() as mock:
        mock.get(
            OBJECT_PATTERN,
            status=404,
            body=s3_error("NoSuchKey", "The specified key does not exist."),
        )
        with pytest.raises(TransferFailed, match="NoSuchKey"):
            await transfers.download(link=Links(), folder=tmp_path, file_name="A.xmp")
        assert len(requests_to(mock, "GET")) == 1
    assert names_in(tmp_path) == []


async def test_download_that_never_verifies_raises_verification_failed(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    transfers = make(session, attempts=2)
    with Mocked() as mock:
        mock.get(OBJECT_PATTERN, status=200, body=DATA, repeat=True)
        with pytest.raises(VerificationFailed, match="MD5"):
            await transfers.download(
                link=Links(), folder=tmp_path, file_name="A.xmp", expected_md5_hex="0" * 32
            )
    assert names_in(tmp_path) == []


async def test_the_shared_session_is_tuned_for_transfers() -> None:
    session = make_session(TransferSettings(connect_timeout=5, read_timeout=60))
    try:
        assert session.timeout.total is None
        assert (session.timeout.sock_connect, session.timeout.sock_read) == (5, 60)
        assert session.auto_decompress is False
        assert "x-api-key" not in session.headers
    finally:
        await session.close()


async def test_a_session_carrying_the_api_key_is_refused() -> None:
    async with aiohttp.ClientSession(headers={"x-api-key": "k"}) as session:
        with pytest.raises(ValueError, match="API key"):
            Transfers(session, TransferSettings())


async def test_a_bare_503_is_an_outage_and_429_or_slowdown_is_throttling(
    session: aiohttp.ClientSession, photo: Path
) -> None:
    """Issue 15 item 11: only 429 and SlowDown are called throttling; a call's own on_retry
    hears its retries as well as the process-wide hook."""
    retries: list[tuple[str, int, str, float]] = []
    own: list[str] = []
    transfers = make(session, attempts=4, retries=retries)
    with Mocked() as mock:
        mock.put(OBJECT_PATTERN, status=503, body=s3_error("ServiceUnavailable", "Try later"))
        mock.put(OBJECT_PATTERN, status=429)
        mock.put(OBJECT_PATTERN, status=503, body=s3_error("SlowDown", "Reduce your rate"))
        mock.put(OBJECT_PATTERN, status=200, headers={"ETag": '"x"'})
        await transfers.upload(
            photo,
            link=Links(),
            size=len(DATA),
            md5=None,
            on_retry=lambda name, attempt, reason, delay: own.append(reason),
        )
    reasons = [reason for _, _, reason, _ in retries]
    assert own == reasons
    assert reasons[0].startswith("storage is unavailable for now (HTTP 503 ServiceUnavailable")
    assert reasons[1].startswith("storage is throttling (HTTP 429")
    assert reasons[2].startswith("storage is throttling (HTTP 503 SlowDown")
