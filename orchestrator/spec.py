"""What a user asked a job to do: one typed, versioned spec for every way in.

`run`, `submit`, the hot folders and the TOML file build it; the store keeps it as JSON with its
version; the stages read it back validated and decide from it whether they apply.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ValidationError

from orchestrator.errors import Refused
from orchestrator.imagen.models import EditChoices

SPEC_VERSION: Literal[1] = 1
"""Version of the stored shape; older shapes are read by `JobSpec.from_stored`."""


class SpecError(Refused):
    """The options cannot form a job (unknown tool, contradicting options); says which."""


class OutputLayout(BaseModel, frozen=True, extra="forbid"):
    """Where a job's outputs go, so that they keep the shoot's shape."""

    subfolders: bool = True
    """Mirror the shoot's subfolders under edited/ and exported/ (else all side by side)."""
    sidecars: Literal["edited", "beside"] = "edited"
    """RAW edits (.xmp sidecars) under edited/, or beside their RAWs, where Lightroom reads
    them (an existing sidecar is kept as NAME.xmp.orig)."""


class JobSpec(BaseModel, frozen=True, extra="forbid"):
    """Everything a job was asked to do, beyond its photos and profile."""

    version: Literal[1] = SPEC_VERSION
    """Shape of this spec as stored."""
    edit: EditChoices = EditChoices()
    """The edit: genre, AI tools and their settings."""
    export: bool = False
    """Export JPEGs after the edit."""
    outputs: OutputLayout | None = None
    """Where the outputs go; None is a job from before layouts (flat, Imagen's names), and
    planning gives every new job the default layout."""

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
        return cls.model_validate(stored)

    def to_stored(self) -> dict[str, Any]:
        """The JSON the store keeps: only what was set, with the version."""
        data = self.model_dump(mode="json", exclude_defaults=True)
        data["version"] = self.version
        if "edit" in data and "tools" in data["edit"]:
            data["edit"]["tools"] = sorted(data["edit"]["tools"])
        return data


def _readable(exc: ValidationError) -> str:
    """One line per problem: where (option name) and what pydantic found wrong."""
    problems = []
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"] if part != "edit")
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)
