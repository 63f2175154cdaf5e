"""What the Imagga client answers and refuses with: suggestions, categories, usage, its errors.

Apart from the client so that the keywording stage's declaration loads no HTTP stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrator.errors import CredentialsRefused, Transient

MODERATION_CATEGORIZER = "nsfw_beta"
SAFE_CATEGORY = "safe"


class ImaggaForbidden(Transient):
    """Imagga answered 403: the month's quota is spent or the plan lacks the feature asked for.

    The job pauses with the reason; it continues once the quota resets or the plan allows it.
    """


class ImaggaNotConfigured(CredentialsRefused):
    """Tagging was asked for but no Imagga key and secret are configured."""


@dataclass(frozen=True)
class Suggestion:
    """One suggested keyword and Imagga's confidence in it (0–100)."""

    tag: str
    confidence: float

    def to_json(self) -> dict[str, Any]:
        """As stored and printed: {"tag", "confidence"}."""
        return {"tag": self.tag, "confidence": self.confidence}


@dataclass(frozen=True)
class Category:
    """One category of a categorizer and the confidence in it (0–100)."""

    name: str
    confidence: float

    def to_json(self) -> dict[str, Any]:
        """As stored and printed: {"name", "confidence"}."""
        return {"name": self.name, "confidence": self.confidence}


@dataclass(frozen=True)
class Usage:
    """The account's quota and concurrency as `GET /usage` tells them."""

    monthly_limit: int
    monthly_processed: int
    concurrency_max: int | None
    concurrency_now: int | None
    resets_at: str | None
    """When the monthly quota resets, as Imagga says it (billing period end), if it does."""

    @property
    def left(self) -> int:
        """Requests left this month."""
        return max(0, self.monthly_limit - self.monthly_processed)


def quota_spent(usage: Usage, needed: int | None = None) -> str:
    """The message for a quota too small: how much is left and when it resets."""
    resets = f"it resets {usage.resets_at}" if usage.resets_at else "it resets with the month"
    wanted = f" and {needed} are needed" if needed is not None else ""
    return (
        f"Imagga's monthly quota has {usage.left} of {usage.monthly_limit} requests left"
        f"{wanted}; {resets}"
    )


@dataclass(frozen=True)
class Colour:
    """One colour of a photo's palette: its HTML code, share of the picture and name."""

    hex: str
    percent: float
    name: str
    """Imagga's closest palette colour (`dusty rose`)."""
    parent: str
    """The palette colour's family (`pink`)."""

    def to_json(self) -> dict[str, Any]:
        """As stored: {"hex", "percent", "name", "parent"}."""
        return {"hex": self.hex, "percent": self.percent, "name": self.name, "parent": self.parent}


@dataclass(frozen=True)
class FaceBox:
    """One face Imagga detected, in pixels of the image it received."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    confidence: float
    face_id: str | None

    def to_json(self) -> dict[str, Any]:
        """As stored: the box, the confidence and the face id (for groupings)."""
        return {
            "xmin": self.xmin,
            "ymin": self.ymin,
            "xmax": self.xmax,
            "ymax": self.ymax,
            "confidence": self.confidence,
            "face_id": self.face_id,
        }


@dataclass(frozen=True)
class Cropping:
    """Imagga's smart cropping for one target size, in pixels of the image it received."""

    target_width: int
    target_height: int
    x1: float
    y1: float
    x2: float
    y2: float

    def to_json(self) -> dict[str, Any]:
        """As stored: the target size and the box."""
        return {
            "target_width": self.target_width,
            "target_height": self.target_height,
            "x1": self.x1,
            "y1": self.y1,
            "x2": self.x2,
            "y2": self.y2,
        }


@dataclass(frozen=True)
class TicketState:
    """An asynchronous Imagga task (`GET /tickets/{id}`): final or not, and when final the
    face groups (each a list of face ids of one person; faces alone in `ungrouped`)."""

    final: bool
    groups: tuple[tuple[str, ...], ...] = ()
    ungrouped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Match:
    """A person of a face recognition index that a face looks like, and how much (0..1)."""

    person: str
    score: float
