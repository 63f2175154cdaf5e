"""The core every HTTP API client is built on: one call under the product's wire rules.

A client names its calls as data (`Call`); the core authenticates them, holds them for their
endpoint's rate limit, retries them by their policy (never blindly when they are not idempotent),
caps and parses their answers, and turns every failure into an `ApiError` whose text carries no
secret.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from aiolimiter import AsyncLimiter

from orchestrator.apicore import jsonsafe
from orchestrator.apicore.auth import Auth
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
from orchestrator.retry import (
    RetriesExhausted,
    RetryableError,
    RetryPolicy,
    call_with_retry,
    parse_retry_after,
)

E = TypeVar("E", bound=ApiError)

DEFAULT_RETRY = RetryPolicy(initial_interval=0.5, maximum_interval=30.0, maximum_attempts=6)
"""About a minute of patience before a service is declared down."""

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=60, sock_connect=10)
"""Timeout for one call when the client gives none; API answers are small and quick."""

MAX_ANSWER_BYTES = 8 * 1024 * 1024
"""Largest successful answer read when neither client nor call says otherwise."""

ERROR_BODY_BYTES = 64 * 1024
"""How much of an error answer is read to explain it; the rest is left unread."""

_CHUNK = 64 * 1024

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
"""Methods that may be repeated safely unless a call says otherwise."""

OnRetry = Callable[[str, int, str, float], None]
"""Told (call name, failed attempt number, reason, seconds before the next) before each retry."""

ErrorText = Callable[[Any], str | None]
"""Picks the server's explanation out of a parsed error answer; None to quote the raw text."""


@dataclass(frozen=True, kw_only=True)
class RateLimit:
    """A token bucket: at most `rate` calls per `per` seconds, in bursts of up to `rate`."""

    rate: float
    per: float = 1.0


@dataclass(frozen=True)
class FilePart:
    """One file of a multipart/form-data body (an image sent for analysis)."""

    name: str
    """The form field."""
    content: bytes = field(repr=False)
    filename: str = "file"
    content_type: str = "application/octet-stream"


@dataclass(frozen=True, kw_only=True)
class Call:
    """One API call as data: what to send and the rules it is sent under."""

    name: str
    """Names the call in errors and retry reports (e.g. "create_project")."""
    method: str
    path: str
    """Appended to the client's base URL as given: quote path segments before."""
    idempotent: bool | None = None
    """Whether repeating the call is harmless; by default, whether its method is."""
    json: Any = None
    """The JSON body, if any."""
    files: tuple[FilePart, ...] = ()
    """Sent as a multipart/form-data body instead of `json` when given."""
    body: bytes | None = None
    """A raw body (a file's bytes, a JSON document of another media type), instead of `json`."""
    content_type: str | None = None
    """The Content-Type of `body`."""
    params: Mapping[str, str | int] | None = None
    limit: str | None = None
    """The endpoint class whose rate limit the call waits for; None for no limit."""
    retry: RetryPolicy | None = None
    """This call's retry policy; the client's when None."""
    max_bytes: int | None = None
    """The largest answer read; the client's cap when None."""

    @property
    def repeatable(self) -> bool:
        """Whether the call may be retried after a failure that leaves its effect unknown."""
        if self.idempotent is not None:
            return self.idempotent
        return self.method.upper() in IDEMPOTENT_METHODS


@dataclass(frozen=True)
class Answer:
    """A successful (2xx) answer, read in full within its cap."""

    status: int
    headers: Mapping[str, str]
    body: bytes


class _NotSent(RetryableError):
    """A failure known to happen before the request left (no connection); always retryable."""


class _TooLarge(Exception):
    """The answer was longer than the cap; raised while reading, before it is all in memory."""


def default_error_text(payload: Any) -> str | None:
    """`error.message`, else a string `error`, else `detail` (a string or FastAPI's list)."""
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str) and error:
        return error
    if payload.get("detail"):
        return _describe_detail(payload["detail"])
    return None


class ApiClient:
    """Sends `Call`s to one service over a shared aiohttp session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        service: str,
        base_url: str,
        auth: Auth,
        retry: RetryPolicy = DEFAULT_RETRY,
        timeout: aiohttp.ClientTimeout | None = None,
        limits: Mapping[str, RateLimit] | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
        max_json_depth: int = jsonsafe.MAX_JSON_DEPTH,
        error_text: ErrorText = default_error_text,
        credentials_hint: str = "",
        unreachable_hint: str = "",
        on_retry: OnRetry | None = None,
    ) -> None:
        self._session = session
        self.service = service
        self.base_url = base_url.rstrip("/")
        self._auth = auth
        self._headers = auth.headers()
        self._scrubber = Scrubber(auth.secrets())
        self._retry = retry
        self._timeout = timeout if timeout is not None else DEFAULT_TIMEOUT
        self._limiters = {
            name: AsyncLimiter(limit.rate, limit.per) for name, limit in (limits or {}).items()
        }
        self._max_answer_bytes = max_answer_bytes
        self._max_json_depth = max_json_depth
        self._error_text = error_text
        self._credentials_hint = credentials_hint
        self._unreachable_hint = unreachable_hint
        self._on_retry = on_retry

    def __repr__(self) -> str:
        return f"ApiClient({self.service!r}, {self.base_url!r})"

    def scrub(self, text: str) -> str:
        """At most a few hundred characters of the text, every secret of the client removed."""
        return self._scrubber.clip(text)

    async def send(self, call: Call) -> Answer:
        """Make the call under its retry rules and return its 2xx answer, or raise an ApiError.

        A repeatable call is retried on any transient failure. Any other is retried only when
        the service certainly did nothing with it (no connection made, or HTTP 429); every other
        transient failure raises ApiAmbiguous at once.
        """
        if call.limit is not None and call.limit not in self._limiters:
            raise ValueError(f"{call.name} names rate limit {call.limit!r}, which has no bucket")
        if _unsendable(self._headers):
            raise self._error(
                ApiCredentialsRefused,
                call,
                f"the {self.service} {self._auth.label} holds a line break or another control "
                f"character and cannot be sent; set it again without them. "
                f"{self._credentials_hint}",
            )
        policy = call.retry or self._retry

        def report(attempt_number: int, error: RetryableError, delay: float) -> None:
            if self._on_retry is not None:
                self._on_retry(call.name, attempt_number, str(error), delay)

        try:
            return await call_with_retry(
                lambda: self._attempt(call, policy), policy, on_retry=report
            )
        except RetriesExhausted as exc:
            raise self._unavailable(call, exc) from None

    async def send_json(self, call: Call) -> Any:
        """Make the call and return the JSON value of its answer."""
        return self.json(call, await self.send(call))

    def json(self, call: Call, answer: Answer) -> Any:
        """The JSON value of an answer; MalformedAnswer if it is not JSON or nests too deeply."""
        text = answer.body.decode("utf-8", errors="replace")
        try:
            return jsonsafe.loads(text, max_depth=self._max_json_depth)
        except jsonsafe.JsonRefused as exc:
            quoted = f": {self.scrub(text)!r}" if str(exc) == "not JSON" else ""
            raise self._error(
                MalformedAnswer,
                call,
                f"unexpected answer from {self.service} to {call.name}: {exc}{quoted}; "
                f"is {self.base_url} the {self.service} API?",
                status=answer.status,
            ) from None

    def malformed(self, call: Call, problem: str, *, status: int | None = None) -> MalformedAnswer:
        """The error for a JSON answer of the wrong shape; `problem` is scrubbed and bounded."""
        return self._error(
            MalformedAnswer,
            call,
            f"unexpected answer from {self.service} to {call.name}: {self.scrub(problem)}",
            status=status,
        )

    async def _attempt(self, call: Call, policy: RetryPolicy) -> Answer:
        """One try of the call: its 2xx answer, or an error saying whether to try again."""
        if call.limit is not None:
            await self._limiters[call.limit].acquire()
        cap = call.max_bytes if call.max_bytes is not None else self._max_answer_bytes
        try:
            # Redirects are not followed: aiohttp would forward the secret to any host.
            # Statuses are judged here whatever the session's raise_for_status says.
            async with self._session.request(
                call.method,
                self.base_url + call.path,
                headers=self._request_headers(call),
                json=None if (call.files or call.body is not None) else call.json,
                data=_form(call.files) if call.files else call.body,
                params=call.params,
                timeout=self._timeout,
                allow_redirects=False,
                raise_for_status=False,
            ) as response:
                status = response.status
                success = 200 <= status < 300
                body = await _read(response, cap if success else ERROR_BODY_BYTES, strict=success)
                headers = response.headers
        except _TooLarge:
            raise self._error(
                AnswerTooLarge,
                call,
                f"unexpected answer from {self.service} to {call.name}: longer than {cap:,} "
                f"bytes, so it was not read; is {self.base_url} the {self.service} API?",
                status=status,
            ) from None
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
            # The connection was never made, so even a state-changing call had no effect.
            raise _NotSent(self._reason(exc)) from None
        except (aiohttp.ClientError, TimeoutError) as exc:
            # `from None` throughout: some aiohttp errors carry the request's headers.
            if call.repeatable:
                raise RetryableError(self._reason(exc)) from None
            raise self._ambiguous(call, self._reason(exc)) from None
        if success:
            return Answer(status, headers, body)
        if status in policy.retryable_statuses:
            reason = f"HTTP {status}: {self._server_message(body)}"
            if call.repeatable or status == 429:
                retry_after = parse_retry_after(headers.get("Retry-After"))
                raise RetryableError(reason, retry_after=retry_after)
            raise self._ambiguous(call, reason, status=status)
        raise self._refusal(call, status, body, headers.get("Location"))

    def _request_headers(self, call: Call) -> Mapping[str, str]:
        """The client's headers, with the raw body's Content-Type when the call has one."""
        if call.content_type is None:
            return self._headers
        return {**self._headers, "Content-Type": call.content_type}

    def _refusal(self, call: Call, status: int, body: bytes, location: str | None) -> ApiError:
        """The error for a non-retryable, non-2xx answer."""
        service = self.service
        if status in (401, 403):
            return self._error(
                ApiCredentialsRefused,
                call,
                f"{service} rejected the {self._auth.label} (HTTP {status}). "
                f"{self._credentials_hint}",
                status=status,
            )
        if 300 <= status < 400:
            return self._error(
                ApiRefused,
                call,
                f"{service} answered {call.name} with a redirect (HTTP {status}) to "
                f"{self.scrub(location or '?')}, which is not followed; "
                f"check the API base URL {self.base_url}",
                status=status,
            )
        message = self._server_message(body)
        if status in (400, 409, 422):
            return self._error(
                ApiBadRequest,
                call,
                f"{service} refused {call.name} (HTTP {status}): {message}",
                status=status,
            )
        if status == 404:
            return self._error(
                ApiNotFound,
                call,
                f"{service} found nothing for {call.name} (HTTP 404): {message}",
                status=status,
            )
        return self._error(
            ApiRefused,
            call,
            f"{service} answered {call.name} with HTTP {status}: {message}",
            status=status,
        )

    def _ambiguous(self, call: Call, reason: str, *, status: int | None = None) -> ApiAmbiguous:
        """The error for a call that is not idempotent and whose effect is unknown."""
        return self._error(
            ApiAmbiguous,
            call,
            f"{call.name} may or may not have taken effect at {self.service} ({self.base_url}): "
            f"{reason}; ask {self.service} whether it did before trying again",
            status=status,
        )

    def _unavailable(self, call: Call, exhausted: RetriesExhausted) -> ApiUnavailable:
        """The error once the retry policy has given up."""
        last = exhausted.last
        if isinstance(last, _NotSent):
            return self._error(
                ApiUnavailable,
                call,
                f"cannot reach {self.service} at {self.base_url}: {last}. {self._unreachable_hint}",
            )
        return self._error(
            ApiUnavailable,
            call,
            f"the {self.service} API at {self.base_url} seems down: {call.name} failed "
            f"{exhausted.attempts} times, last with {last}",
        )

    def _error(self, kind: type[E], call: Call, message: str, *, status: int | None = None) -> E:
        """An error of the kind, its whole text scrubbed once more (the base URL is config)."""
        return kind(self._scrubber.scrub(message.strip()), call=call.name, status=status)

    def _server_message(self, body: bytes) -> str:
        """The server's explanation of an error answer, scrubbed and bounded."""
        text = body.decode("utf-8", errors="replace")
        try:
            payload = jsonsafe.loads(text, max_depth=self._max_json_depth)
        except jsonsafe.JsonRefused:
            payload = None
        explained = self._error_text(payload)
        return self.scrub(explained if explained else text.strip()) or "(empty answer)"

    def _reason(self, exc: BaseException) -> str:
        """A short description of a transport failure."""
        if str(exc):
            return self.scrub(str(exc))
        if isinstance(exc, TimeoutError):
            return "no answer before the timeout"
        return type(exc).__name__


async def _read(response: aiohttp.ClientResponse, cap: int, *, strict: bool) -> bytes:
    """At most `cap` bytes of the body, read in chunks.

    Past the cap, a strict read raises _TooLarge and a lenient one returns what it has; either
    way the connection is closed rather than drained, so the rest is never read.
    """
    length = response.content_length
    if strict and length is not None and length > cap:
        response.close()
        raise _TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(_CHUNK):
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            response.close()
            if strict:
                raise _TooLarge
            break
    return b"".join(chunks)[:cap]


def _form(files: tuple[FilePart, ...]) -> aiohttp.FormData:
    """A fresh multipart body for one attempt (aiohttp consumes a FormData when sending it)."""
    form = aiohttp.FormData()
    for part in files:
        form.add_field(
            part.name, part.content, filename=part.filename, content_type=part.content_type
        )
    return form


def _unsendable(headers: Mapping[str, str]) -> bool:
    """Whether a header value holds a character HTTP cannot carry (aiohttp would quote it)."""
    return any(ord(char) < 32 or char == "\x7f" for value in headers.values() for char in value)


def _describe_detail(detail: Any) -> str:
    """Readable text from a `detail` that may be a string, a validation error list or a dict."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list):
        return "; ".join(_describe_detail(item) for item in detail)
    if isinstance(detail, dict) and "msg" in detail:
        location = ".".join(str(part) for part in detail.get("loc", ()))
        return f"{location}: {detail['msg']}" if location else str(detail["msg"])
    return json.dumps(detail, ensure_ascii=False)
