"""What a user asked a job to do: one typed, versioned spec for every way in.

`run`, `submit`, the hot folders and the TOML file build it; the store keeps it as JSON with its
version; the stages read it back validated and decide from it whether they apply.
"""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from orchestrator.errors import Refused
from orchestrator.imagen.models import EditChoices
from orchestrator.integrations.delivery_files import DEFAULT_TEMPLATE, PathRefused, check_template

SPEC_VERSION: Literal[1] = 1
"""Version of the stored shape; older shapes are read by `JobSpec.from_stored`."""


class SpecError(Refused):
    """The options cannot form a job (unknown tool, contradicting options); says which."""


class DeliverSpec(BaseModel, frozen=True, extra="forbid"):
    """Delivery of the exported JPEGs to the imgix Source (IMGIX_* settings)."""

    path: str = DEFAULT_TEMPLATE
    """Origin path template: {job_name}, {job_id}, {file_name}, {stem}."""
    description: str | None = Field(default=None, max_length=2000)
    """The assets' description in imgix, if any."""

    @field_validator("path")
    @classmethod
    def _safe_path(cls, value: str) -> str:
        try:
            return check_template(value)
        except PathRefused as exc:
            raise ValueError(str(exc)) from None


class JobSpec(BaseModel, frozen=True, extra="forbid"):
    """Everything a job was asked to do, beyond its photos and profile."""

    version: Literal[1] = SPEC_VERSION
    """Shape of this spec as stored."""
    edit: EditChoices = EditChoices()
    """The edit: genre, AI tools and their settings."""
    export: bool = False
    """Export JPEGs after the edit."""
    deliver: DeliverSpec | None = None
    """Deliver the exported JPEGs to imgix (needs `export`)."""

    @model_validator(mode="after")
    def _deliver_needs_export(self) -> JobSpec:
        if self.deliver is not None and not self.export:
            raise ValueError("--deliver delivers the exported JPEGs: add --export")
        return self

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
