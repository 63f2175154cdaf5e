"""What presigned storage's answers mean: refusals, S3 error messages, ETags, network failures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import NoReturn

import aiohttp
from yarl import URL

from orchestrator.retry import RetryableError, parse_retry_after
from orchestrator.transfer.attempts import Throttled
from orchestrator.transfer.errors import LinkExpired, TransferFailed, TransferRefused, redact_urls

NETWORK_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError)
"""Exceptions that mean the connection, not the request, went wrong."""

THROTTLE_STATUSES = frozenset({429, 503})
"""Statuses by which storage asks for less load (S3 answers SlowDown with 503)."""

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""Answers that send a GET elsewhere; followed by hand, each hop checked (check_redirect)."""

MAX_REDIRECTS = 5
"""Redirects one download may follow; more is a loop, refused at once."""

LINK_SCHEMES = frozenset({"http", "https"})
"""The only kinds of link transfers use; anything else (file:, ftp:, data:) is refused."""

_MAX_ERROR_BODY = 64 * 1024
_MAX_SHOWN = 300
_PLAIN_MD5_ETAG = re.compile(r'"?([0-9a-fA-F]{32})"?')


@dataclass(frozen=True)
class Refusal:
    """A non-success answer from storage, with S3's error code and message when it sent XML."""

    status: int
    code: str | None
    message: str
    retry_after: float | None

    def describe(self) -> str:
        """Short text for users, e.g. "HTTP 400 BadDigest: The Content-MD5 you specified..."."""
        head = f"HTTP {self.status}" + (f" {self.code}" if self.code else "")
        return f"{head}: {self.message}" if self.message else head


async def read_refusal(response: aiohttp.ClientResponse) -> Refusal:
    """Read (a bounded amount of) a failed answer's body and pick out what it says."""
    body = bytearray()
    try:
        while len(body) < _MAX_ERROR_BODY:
            chunk = await response.content.read(_MAX_ERROR_BODY - len(body))
            if not chunk:
                break
            body += chunk
    except NETWORK_ERRORS:
        # The status alone is enough to act on; the message is a courtesy.
        pass
    text = body.decode("utf-8", "replace")
    code = _xml_field(text, "Code")
    message = _xml_field(text, "Message")
    if message is None:
        message = " ".join(text.split())[:_MAX_SHOWN] if "<" not in text else ""
    return Refusal(
        status=response.status,
        code=code,
        message=redact_urls(message),
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


def raise_refusal(
    refusal: Refusal, *, file_name: str, retryable_statuses: frozenset[int]
) -> NoReturn:
    """Turn a refusal into the error that makes the attempt loop do the right thing."""
    detail = refusal.describe()
    if refusal.status == 403:
        raise LinkExpired(file_name, detail)
    if refusal.status in THROTTLE_STATUSES or refusal.code == "SlowDown":
        # Both ask for less load, but only 429 and SlowDown say so: a bare 503 is an outage.
        asked = refusal.status == 429 or refusal.code == "SlowDown"
        what = "storage is throttling" if asked else "storage is unavailable for now"
        raise Throttled(f"{what} ({detail})", retry_after=refusal.retry_after)
    if refusal.status in retryable_statuses:
        raise RetryableError(f"storage answered {detail}", retry_after=refusal.retry_after)
    raise TransferFailed(file_name, f"storage answered {detail}")


def check_link(file_name: str, url: str) -> str:
    """`url` itself if a transfer may use it: an http(s) link, to any host; else TransferRefused.

    Presigned links come from Imagen and must reach wherever its storage is (S3 regions, a
    CDN), so their host is not restricted; only their scheme is.
    """
    scheme = URL(url, encoded=True).scheme.lower()
    if scheme not in LINK_SCHEMES:
        raise TransferRefused(
            file_name,
            f"refusing a {scheme or 'schemeless'} link: only http and https links are used",
        )
    return url


def check_redirect(file_name: str, current: str, location: str | None) -> str:
    """Where a download's redirect leads, if it may be followed; else TransferRefused.

    Followed: http(s) targets on any host (storage may hand a download to a CDN or another
    region), never https -> http (the rest of the download would travel in the clear), never
    a scheme such as file: that would read something local.
    """
    if not location:
        raise TransferRefused(file_name, "storage answered a redirect without a Location")
    here = URL(current, encoded=True)
    try:
        target = here.join(URL(location, encoded=True))
    except ValueError as exc:
        raise TransferRefused(
            file_name, f"storage redirected to an invalid address: {exc}"
        ) from None
    scheme = target.scheme.lower()
    if scheme not in LINK_SCHEMES:
        raise TransferRefused(
            file_name,
            f"storage redirected to a {scheme or 'schemeless'} "
            "address; only http and https redirects are followed",
        )
    if here.scheme.lower() == "https" and scheme == "http":
        raise TransferRefused(
            file_name, "storage redirected from https to plain http; not followed"
        )
    return str(target)


def connection_failure(exc: BaseException) -> RetryableError:
    """A retryable error describing a network failure, with any link signature removed."""
    if isinstance(exc, TimeoutError):
        return RetryableError("storage stopped answering (timed out)")
    detail = str(exc) or type(exc).__name__
    return RetryableError(redact_urls(f"network error: {type(exc).__name__}: {detail}"))


def etag_md5(etag: str | None) -> str | None:
    """The lower-case MD5 hex an ETag stands for, if it is a plain one (not multipart or weak)."""
    if etag is None:
        return None
    match = _PLAIN_MD5_ETAG.fullmatch(etag.strip())
    return match.group(1).lower() if match else None


def _xml_field(text: str, name: str) -> str | None:
    match = re.search(rf"<{name}>(.*?)</{name}>", text, re.DOTALL)
    return " ".join(match.group(1).split())[:_MAX_SHOWN] if match else None
