"""What a delivered photo carries of Imagga's analyses: the `delivery.json` fields (`colors`,
`faces`, `people`, `focal_point`, `crops` on the focal point) and the imgix custom fields
(palette, focal point, face count, people). Each only when the job asked for its analysis."""

from __future__ import annotations

from typing import Any

from orchestrator.integrations.delivery_files import Urls
from orchestrator.workflow.analyses import CROP_RATIOS
from orchestrator.workflow.tag_details import TagDetails

FIELD_LIMIT = 255
"""Longest custom field value written (imgix keeps short strings)."""


def analysis_record(details: TagDetails | None, urls: Urls, path: str) -> dict[str, Any]:
    """The photo's analyses as its delivery.json record holds them."""
    if details is None:
        return {}
    found: dict[str, Any] = {}
    if details.colors is not None:
        found["colors"] = [
            {"hex": c.hex, "percent": c.percent, "name": c.name} for c in details.colors
        ]
    if details.faces is not None:
        found["faces"] = len(details.faces)
        found["people"] = details.people
    point = details.focal_point
    if point is not None:
        found["focal_point"] = {"x": point.x, "y": point.y}
        found["crops"] = {
            ratio: urls.crop_url(path, ratio, (point.x, point.y)) for ratio in CROP_RATIOS
        }
    return found


def analysis_fields(details: TagDetails | None) -> dict[str, str]:
    """The photo's analyses as imgix custom fields (a string map), searchable in imgix."""
    if details is None:
        return {}
    fields: dict[str, str] = {}
    if details.colors is not None:
        fields["colors"] = ", ".join(dict.fromkeys(c.name for c in details.colors))
        fields["palette"] = " ".join(f"{c.hex}:{c.percent:g}" for c in details.colors)
    if details.faces is not None:
        fields["faces"] = str(len(details.faces))
        fields["people"] = ", ".join(details.people)
    if details.focal_point is not None:
        fields["fp_x"] = f"{details.focal_point.x:.4f}"
        fields["fp_y"] = f"{details.focal_point.y:.4f}"
    return {name: value[:FIELD_LIMIT] for name, value in fields.items()}
