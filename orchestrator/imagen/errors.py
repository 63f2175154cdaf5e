"""The failures the Imagen client reports, each a clear message a user can act on.

Each is also one of the product's root errors, so the engine can act on its meaning alone.
Messages are written for people and never carry the API key.
"""

from __future__ import annotations

from orchestrator.errors import (
    Ambiguous,
    CredentialsRefused,
    OrchestratorError,
    Refused,
    Transient,
)


class ImagenError(OrchestratorError):
    """Any failure talking to Imagen; `status` is the HTTP status when there was one.

    A bare ImagenError (an unexpected HTTP status) is neither transient nor refused, which the
    root error defines as refused; its subclasses say which they are.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class ImagenAuthError(ImagenError, CredentialsRefused):
    """Imagen refused the API key (HTTP 401, or 403 on an API route)."""


class ImagenBadRequest(ImagenError, Refused):
    """Imagen refused the request as it stands (HTTP 400, 409 or 422); retrying will not help."""


class ImagenNotFound(ImagenError, Refused):
    """Imagen has no such thing (HTTP 404)."""


class ImagenMalformedAnswer(ImagenError, Refused):
    """Imagen answered with something we cannot use: not JSON, too deep, too large, odd shape."""


class ImagenUnavailable(ImagenError, Transient):
    """Imagen could not be reached or kept failing until the retry policy gave up."""


class ImagenAmbiguous(ImagenUnavailable, Ambiguous):
    """A call that changes state failed in a way that leaves unknown whether it took effect.

    Retrying blindly could create a second project or start a second edit, so the caller must
    ask Imagen what happened before calling again.
    """


class EditOptionsError(ValueError):
    """The chosen edit options contradict each other or do not suit the project's image type."""
