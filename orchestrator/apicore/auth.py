"""How a client proves who it is: one strategy per scheme, the secret only ever in a header.

Each strategy also lists the secrets it holds, so the core can scrub them from every error text,
and hides them from `repr`.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import ClassVar, Protocol


class Auth(Protocol):
    """A way to authenticate requests."""

    label: ClassVar[str]
    """What the secret is called in messages ("API key", "credentials", "token")."""

    def headers(self) -> dict[str, str]:
        """The request headers that carry the secret."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Every secret value this strategy holds, as sent or as configured."""
        ...


@dataclass(frozen=True)
class ApiKeyHeader:
    """An API key sent in a header of its own (`x-api-key` unless named otherwise)."""

    key: str = field(repr=False)
    header: str = "x-api-key"
    label: ClassVar[str] = "API key"

    def headers(self) -> dict[str, str]:
        """The key in its header."""
        return {self.header: self.key}

    def secrets(self) -> tuple[str, ...]:
        """The key."""
        return (self.key,)


@dataclass(frozen=True)
class BasicAuth:
    """HTTP Basic: a user and a password (Imagga's API key and secret)."""

    user: str = field(repr=False)
    password: str = field(repr=False)
    label: ClassVar[str] = "credentials"

    def _token(self) -> str:
        return base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")

    def headers(self) -> dict[str, str]:
        """The pair, base64-encoded in an Authorization header."""
        return {"Authorization": f"Basic {self._token()}"}

    def secrets(self) -> tuple[str, ...]:
        """Each half, the pair, and the pair as encoded on the wire."""
        return (self.user, self.password, f"{self.user}:{self.password}", self._token())


@dataclass(frozen=True)
class BearerToken:
    """A bearer token in the Authorization header (imgix)."""

    token: str = field(repr=False)
    label: ClassVar[str] = "token"

    def headers(self) -> dict[str, str]:
        """The token in an Authorization header."""
        return {"Authorization": f"Bearer {self.token}"}

    def secrets(self) -> tuple[str, ...]:
        """The token."""
        return (self.token,)
