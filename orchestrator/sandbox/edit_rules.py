"""The edit request's flat JSON, checked against the rules Imagen enforces."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from yarl import URL

from orchestrator.imagen.models import (
    TOOLS,
    CropAspectRatio,
    HdrCompression,
    PhotographyType,
)
from orchestrator.sandbox.config import Profile

# The vocabulary is shared with the client (the blueprint allows the shared models); the rules
# below are the sandbox's own, so a client bug in applying them still shows.
PHOTOGRAPHY_TYPES = frozenset(t.value for t in PhotographyType)
CROP_ASPECT_RATIOS = frozenset(r.value for r in CropAspectRatio)
HDR_COMPRESSIONS = frozenset(c.value for c in HdrCompression)
CROP_TOOLS = ("crop", "portrait_crop", "headshot_crop")


class EditRuleError(ValueError):
    """The edit request breaks a rule; the message is what the API answers."""


@dataclass(frozen=True, kw_only=True)
class EditSettings:
    """An accepted edit request."""

    profile_key: int
    tools: tuple[str, ...]  # the boolean tools switched on, in TOOLS order
    photography_type: str | None = None
    callback_url: str | None = None
    crop_aspect_ratio: str | None = None
    sky_replacement_template_id: int | None = None
    hdr_output_compression: str | None = None
    export: bool = False


def _flag(body: Mapping[str, Any], name: str) -> bool:
    value = body.get(name)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise EditRuleError(f"{name} must be a boolean")
    return value


def _choice(body: Mapping[str, Any], name: str, allowed: frozenset[str]) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if value not in allowed:
        raise EditRuleError(f"{name} must be one of {', '.join(sorted(allowed))}, got {value!r}")
    return str(value)


def _integer(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise EditRuleError(f"{name} must be an integer")
    return value


def _callback_url(body: Mapping[str, Any]) -> str | None:
    value = body.get("callback_url")
    if value is None:
        return None
    if not isinstance(value, str) or URL(value).scheme not in ("http", "https"):
        raise EditRuleError("callback_url must be an http(s) URL")
    return value


def parse_edit_request(
    body: Any,
    *,
    profiles: Mapping[int, Profile],
    image_type: str,
    template_ids: Collection[int],
) -> EditSettings:
    """Check an edit body for a project of `image_type` files; EditRuleError if it breaks a rule."""
    if not isinstance(body, dict):
        raise EditRuleError("The request body must be a JSON object")
    profile_key = _integer(body, "profile_key")
    if profile_key is None:
        raise EditRuleError("profile_key is required")
    profile = profiles.get(profile_key)
    if profile is None:
        raise EditRuleError(f"Profile {profile_key} not found")
    if profile.image_type != image_type:
        raise EditRuleError(
            f"Profile {profile_key} edits {profile.image_type} images "
            f"but this project holds {image_type} files"
        )
    tools = tuple(tool for tool in TOOLS if _flag(body, tool))
    if sum(tool in CROP_TOOLS for tool in tools) > 1:
        raise EditRuleError("Only one of crop, portrait_crop or headshot_crop can be used")
    if "straighten" in tools and "perspective_correction" in tools:
        raise EditRuleError("straighten and perspective_correction cannot be used together")
    if "hdr_merge" in tools and image_type != "RAW":
        raise EditRuleError("hdr_merge is available for RAW files only")
    compression = _choice(body, "hdr_output_compression", HDR_COMPRESSIONS)
    if compression is not None and "hdr_merge" not in tools:
        raise EditRuleError("hdr_output_compression needs hdr_merge")
    template_id = _integer(body, "sky_replacement_template_id")
    if template_id is not None and template_id not in template_ids:
        raise EditRuleError(f"Sky replacement template {template_id} not found")
    return EditSettings(
        profile_key=profile_key,
        tools=tools,
        photography_type=_choice(body, "photography_type", PHOTOGRAPHY_TYPES),
        callback_url=_callback_url(body),
        crop_aspect_ratio=_choice(body, "crop_aspect_ratio", CROP_ASPECT_RATIOS),
        sky_replacement_template_id=template_id,
        hdr_output_compression=compression,
        export=_flag(body, "export"),
    )
