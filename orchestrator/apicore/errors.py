"""The failures an API client built on the core reports, each under the product's root error.

`str()` of every one is written for people, quotes at most a few hundred characters of server
text, and has every secret the client holds scrubbed out.
"""

from __future__ import annotations

from orchestrator.errors import (
    Ambiguous,
    CredentialsRefused,
    OrchestratorError,
    Refused,
    Transient,
)


class ApiError(OrchestratorError):
    """Any failed API call; `call` names it and `status` is the HTTP status when there was one."""

    def __init__(self, message: str, *, call: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.call = call
        self.status = status


class ApiUnavailable(ApiError, Transient):
    """The service could not be reached, or kept failing until the retry policy gave up."""


class ApiAmbiguous(ApiUnavailable, Ambiguous):
    """A call that is not idempotent failed in a way that leaves unknown whether it took effect.

    It is never retried blindly: the caller must ask the service what happened first.
    """


class ApiCredentialsRefused(ApiError, CredentialsRefused):
    """The service refused our credentials (HTTP 401 or 403), or they cannot be sent at all."""


class ApiRefused(ApiError, Refused):
    """The service refused the call as it stands (a 4xx, a redirect); asking again won't help."""


class ApiBadRequest(ApiRefused):
    """The service found the request itself wrong (HTTP 400, 409 or 422)."""


class ApiNotFound(ApiRefused):
    """The service has no such thing (HTTP 404)."""


class MalformedAnswer(ApiRefused):
    """A successful answer we cannot use: not JSON, nested too deeply, or of the wrong shape."""


class AnswerTooLarge(MalformedAnswer):
    """A successful answer longer than the call's size cap; it was not read to the end."""
