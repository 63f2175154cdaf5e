"""What a user asked a job to do: one typed, versioned spec for every way in.

`run`, `submit`, the hot folders and the TOML file build it; the store keeps it as JSON with its
version; the stages read it back validated and decide from it whether they apply.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import Refused
from orchestrator.imagen.models import EditChoices
from orchestrator.rules.delivery import (
    DEFAULT_TEMPLATE,
    LEGACY_TEMPLATE,
    PathRefused,
    check_template,
)

SPEC_VERSION: Literal[1] = 1
"""Version of the stored shape; older shapes are read by `JobSpec.from_stored`."""


class SpecError(Refused):
    """The options cannot form a job (unknown tool, contradicting options); says which."""


LANGUAGE_CODE = r"^[a-z]{2}(_[a-z]{2,4})?$"
"""Imagga's language codes: `en`, `de`, `zh_chs`, …"""


class TagSpec(BaseModel, frozen=True, extra="forbid"):
    """Keywords from Imagga: which tags become keywords, and the optional analyses."""

    languages: tuple[str, ...] = ("en",)
    """Languages of the keywords (Imagga codes); every one is written."""
    threshold: float = Field(default=60.0, ge=0, le=100)
    """Every tag at or above this confidence (0–100) becomes a keyword…"""
    min_keywords: int = Field(default=3, ge=0, le=200)
    """…and always at least this many, the most confident first…"""
    max_keywords: int = Field(default=30, ge=1, le=200)
    """…but never more than this many."""
    categorizer: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,64}$")
    """An Imagga categorizer (e.g. `personal_photos`) whose categories are kept per photo."""
    moderate: bool = False
    """Also run Imagga's `nsfw_beta` categorizer; flagged photos are never delivered unseen."""
    long_side: int = Field(default=1024, ge=128, le=4096)
    """Long side in pixels of the copy sent to Imagga."""
    colors: bool = False
    """Also ask Imagga for the palette: `Colors|Name` keywords, delivery.json, imgix fields."""
    faces: bool = False
    """Also ask Imagga for the faces: MWG face regions in the files, a face count."""
    people: bool = False
    """Also group the job's faces into persons (needs the faces; switches them on), to be
    named once (`orchestrator people`) into `People|Name` keywords and named regions."""
    smart_crops: bool = False
    """Also ask Imagga for smart croppings: the focal point of the delivered crops."""

    @field_validator("languages")
    @classmethod
    def _languages(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        cleaned = tuple(dict.fromkeys(code.strip().lower() for code in value if code.strip()))
        if not cleaned:
            raise ValueError("give at least one language, e.g. en")
        bad = [code for code in cleaned if not re.match(LANGUAGE_CODE, code)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an Imagga language code such as en, de, zh_chs")
        return cleaned

    @property
    def analyses_per_photo(self) -> int:
        """Imagga requests one photo costs: the tags, then each optional analysis."""
        return (
            1
            + (self.categorizer is not None)
            + self.moderate
            + self.colors
            + self.wants_faces
            + self.smart_crops
        )

    @property
    def wants_faces(self) -> bool:
        """Whether the faces are detected (asked for, or needed to group people)."""
        return self.faces or self.people

    @model_validator(mode="after")
    def _counts(self) -> TagSpec:
        if self.min_keywords > self.max_keywords:
            raise ValueError(
                f"at least {self.min_keywords} keywords cannot fit in at most {self.max_keywords}"
            )
        return self


class DeliverSpec(BaseModel, frozen=True, extra="forbid"):
    """Delivery of the exported JPEGs to the imgix Source (IMGIX_* settings)."""

    path: str = DEFAULT_TEMPLATE
    """Origin path template: {shoot}, {path}, {job_name}, {job_id}, {file_name}, {stem}.
    Always stored (`JobSpec.to_stored`): a stored delivery without one is from before shoots
    and keeps `LEGACY_TEMPLATE`, so its photos stay where they were delivered."""
    description: str | None = Field(default=None, max_length=2000)
    """The assets' description in imgix, if any."""

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        try:
            return check_template(value)
        except PathRefused as exc:
            raise ValueError(str(exc)) from None


class OutputLayout(BaseModel, frozen=True, extra="forbid"):
    """Where a job's outputs go, so that they keep the shoot's shape."""

    subfolders: bool = True
    """Mirror the shoot's subfolders under edited/ and exported/ (else all side by side)."""
    sidecars: Literal["edited", "beside"] = "edited"
    """RAW edits (.xmp sidecars) under edited/, or beside their RAWs, where Lightroom reads
    them (an existing sidecar is kept as NAME.xmp.orig)."""
    folder: str | None = None
    """Where edited/, exported/ and delivered/ go (absolute; a relative path is taken from
    the directory the spec is made in); None: in the shoot folder. For a shoot on a read-only
    card or share."""

    @field_validator("folder")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip() or "\0" in value:
            raise ValueError("give the folder the outputs go to")
        return str(Path(value).expanduser().resolve())


class JobSpec(BaseModel, frozen=True, extra="forbid"):
    """Everything a job was asked to do, beyond its photos and profile."""

    version: Literal[1] = SPEC_VERSION
    """Shape of this spec as stored."""
    edit: EditChoices = EditChoices()
    """The edit: genre, AI tools and their settings."""
    export: bool = False
    """Export JPEGs after the edit."""
    tag: TagSpec | None = None
    """Keywords from Imagga written into the outputs; None: no tagging."""
    review: bool = False
    """Hold the job after keywording until a person approves it (the web page, `approve`)."""
    deliver: DeliverSpec | None = None
    """Deliver the exported JPEGs to imgix (needs `export`)."""

    @model_validator(mode="after")
    def _deliver_needs_export(self) -> JobSpec:
        if self.deliver is not None and not self.export:
            raise ValueError("--deliver delivers the exported JPEGs: add --export")
        return self

    outputs: OutputLayout | None = None
    """Where the outputs go; None is a job from before layouts (flat, Imagen's names), and
    planning gives every new job the default layout."""
    min_rating: int | None = Field(default=None, ge=0, le=5)
    """Send only the photos rated this or more (xmp:Rating, from the sidecar or the photo
    itself), never a rejected one (-1); None: every photo."""
    keywords: tuple[str, ...] = ()
    """The shoot's own words (the couple, the venue), written into every photo beside
    Imagga's and kept apart from them in the review."""

    @field_validator("keywords")
    @classmethod
    def _keywords(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return shoot_keywords(value)

    @classmethod
    def build(cls, **fields: Any) -> JobSpec:
        """A spec from user input, or SpecError naming what is wrong."""
        try:
            return cls.model_validate(fields)
        except ValidationError as exc:
            raise SpecError(_readable(exc)) from None

    @classmethod
    def from_stored(cls, stored: dict[str, Any]) -> Self:
        """The spec of a job as the store holds it (versioned JSON), validated.

        Version 0 is the unversioned shape of releases before 0003: `{"export", "edit",
        "profile_name"}`, the profile name now kept in its own column.
        """
        if "version" not in stored:
            stored = {
                "version": SPEC_VERSION,
                "edit": stored.get("edit") or {},
                "export": bool(stored.get("export", False)),
            }
        deliver = stored.get("deliver")
        if isinstance(deliver, dict) and "path" not in deliver:
            stored = {**stored, "deliver": {**deliver, "path": LEGACY_TEMPLATE}}
        return cls.model_validate(stored)

    def to_stored(self) -> dict[str, Any]:
        """The JSON the store keeps: only what was set, with the version."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["version"] = self.version
        if "edit" in data and "tools" in data["edit"]:
            data["edit"]["tools"] = sorted(data["edit"]["tools"])
        if self.deliver is not None:
            data.setdefault("deliver", {})["path"] = self.deliver.path
        return data


SHOOT_KEYWORD_CHARS = 64
"""The longest shoot keyword (IPTC keeps 64 bytes of each)."""


def shoot_keywords(words: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Shoot keywords cleaned (control characters and extra spaces out, no repeats), or
    ValueError naming one that cannot be a keyword."""
    cleaned: list[str] = []
    for word in words:
        text = " ".join("".join(c if c.isprintable() else " " for c in word).split())
        if not text:
            continue
        if len(text.encode()) > SHOOT_KEYWORD_CHARS:
            raise ValueError(f"keyword {text[:40]!r}… is longer than {SHOOT_KEYWORD_CHARS} bytes")
        if "|" in text:
            raise ValueError(f"keyword {text!r}: '|' separates levels of a hierarchy")
        if text.casefold() not in {w.casefold() for w in cleaned}:
            cleaned.append(text)
    return tuple(cleaned)


def _readable(exc: ValidationError) -> str:
    """One line per problem: where (option name) and what pydantic found wrong."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "edit")
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
