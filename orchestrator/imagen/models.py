"""The shapes of what Imagen sends and receives, validated with pydantic.

Answer models ignore fields they do not know, so a richer answer from the API never breaks us.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from orchestrator.imagen.errors import EditOptionsError


class ImageType(StrEnum):
    """The kind of photos a profile edits and a project holds; a project never mixes them."""

    RAW = "RAW"
    JPG = "JPG"


class PhotographyType(StrEnum):
    """The genre hint that tunes Imagen's AI tools."""

    NO_TYPE = "NO_TYPE"
    OTHER = "OTHER"
    PORTRAITS = "PORTRAITS"
    WEDDING = "WEDDING"
    REAL_ESTATE = "REAL_ESTATE"
    LANDSCAPE_NATURE = "LANDSCAPE_NATURE"
    EVENTS = "EVENTS"
    FAMILY_NEWBORN = "FAMILY_NEWBORN"
    BOUDOIR = "BOUDOIR"
    SPORTS = "SPORTS"
    SCHOOL = "SCHOOL"


class CropAspectRatio(StrEnum):
    """Aspect ratios the crop tools can aim for."""

    R2X3 = "2X3"
    R4X5 = "4X5"
    R5X7 = "5X7"


class HdrCompression(StrEnum):
    """Compression of the DNG that hdr_merge produces."""

    LOSSY = "LOSSY"
    LOSSLESS = "LOSSLESS"


class Profile(BaseModel):
    """An editing style trained in the user's Imagen account."""

    profile_key: int
    profile_name: str
    profile_type: str | None = None
    image_type: ImageType

    @field_validator("image_type", mode="before")
    @classmethod
    def _normalise_image_type(cls, value: object) -> object:
        # Sources disagree on spelling: "JPG", "JPEG", "jpg", "raw" all occur.
        if isinstance(value, str):
            spelled = value.strip().upper()
            return ImageType.JPG if spelled == "JPEG" else spelled
        return value


class ProjectInfo(BaseModel):
    """What Imagen knows about one project; used to find our place again when resuming."""

    # The official SDK types customer_reference_id as an int; we only ever display it.
    model_config = ConfigDict(coerce_numbers_to_str=True)

    project_uuid: str
    name: str | None = None
    status: str | None = None
    created_at: str | None = None
    number_of_images: int | None = None
    export_status: str | None = None
    customer_reference_id: str | None = None


class Pagination(BaseModel):
    """The paging block of the project list; only the total tells us when to stop."""

    total: int


class ProjectPage(BaseModel):
    """One page of the project list."""

    projects: list[ProjectInfo]
    pagination: Pagination


class UploadLink(BaseModel):
    """Where to PUT one photo's bytes."""

    file_name: str
    upload_link: str


class DownloadLink(BaseModel):
    """Where to GET one result file; name the local file from `file_name`, never the URL."""

    file_name: str
    download_link: str

    @model_validator(mode="before")
    @classmethod
    def _accept_upload_link_label(cls, data: object) -> object:
        # An old documentation example labels the download URL "upload_link".
        if isinstance(data, dict) and "download_link" not in data and "upload_link" in data:
            return {**data, "download_link": data["upload_link"]}
        return data


KNOWN_STATUSES = frozenset(
    {"completed", "failed", "pending", "in progress", "processing", "queued"}
)
"""The status words of an edit or export Imagen is known to use (compared case-folded)."""


class TaskStatus(BaseModel):
    """Progress of an edit or export; the status word's casing varies, so compare via the flags."""

    status: str
    progress: float | None = None
    details: str | None = None

    @property
    def is_completed(self) -> bool:
        """Whether the task finished successfully."""
        return self.status.strip().casefold() == "completed"

    @property
    def is_failed(self) -> bool:
        """Whether the task ended in failure."""
        return self.status.strip().casefold() == "failed"

    @property
    def is_terminal(self) -> bool:
        """Whether the task will not change any more; any other word means keep waiting."""
        return self.is_completed or self.is_failed


TOOLS: tuple[str, ...] = (
    "crop",
    "portrait_crop",
    "headshot_crop",
    "straighten",
    "perspective_correction",
    "subject_mask",
    "smooth_skin",
    "hdr_merge",
    "window_pull",
    "sky_replacement",
)
"""The AI tools an edit can switch on, in the order they are sent."""

_CROP_TOOLS: tuple[str, ...] = ("crop", "portrait_crop", "headshot_crop")


class EditChoices(BaseModel, frozen=True, extra="forbid"):
    """The edit a user asks for, apart from the profile (chosen per image type).

    Unknown fields are refused rather than ignored, so a misspelt option fails loudly instead of
    silently editing a whole shoot without it.
    """

    photography_type: PhotographyType | None = None
    """Genre hint for the AI tools."""
    tools: frozenset[str] = frozenset()
    """AI tools to switch on; names from TOOLS."""
    sky_replacement_template_id: int | None = None
    """Sky to use with sky_replacement; Imagen's default when unset."""
    crop_aspect_ratio: CropAspectRatio | None = None
    """Target ratio for the chosen crop tool."""
    hdr_output_compression: HdrCompression | None = None
    """Compression of hdr_merge's DNG output (RAW only)."""

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, tools: frozenset[str]) -> frozenset[str]:
        unknown = sorted(tools.difference(TOOLS))
        if unknown:
            raise ValueError(
                f"unknown tool(s): {', '.join(unknown)}; valid tools are: {', '.join(TOOLS)}"
            )
        return tools

    def check_for(self, image_type: ImageType) -> None:
        """Refuse combinations Imagen rejects, before anything is uploaded.

        Raises EditOptionsError naming every problem at once, so one fix-up round is enough.
        """
        problems: list[str] = []
        crops = [tool for tool in _CROP_TOOLS if tool in self.tools]
        if len(crops) > 1:
            problems.append(f"choose one crop tool, not {' and '.join(crops)}")
        if {"straighten", "perspective_correction"} <= self.tools:
            problems.append("straighten and perspective_correction exclude each other; choose one")
        hdr_merge = "hdr_merge" in self.tools
        if hdr_merge and image_type is ImageType.JPG:
            problems.append("hdr_merge works on RAW photos only, and these photos are JPEG")
        if self.hdr_output_compression is not None and (
            not hdr_merge or image_type is ImageType.JPG
        ):
            problems.append("hdr_output_compression only applies with hdr_merge on RAW photos")
        if self.crop_aspect_ratio is not None and not crops:
            problems.append(f"crop_aspect_ratio needs a crop tool ({', '.join(_CROP_TOOLS)})")
        if self.sky_replacement_template_id is not None and "sky_replacement" not in self.tools:
            problems.append("sky_replacement_template_id needs the sky_replacement tool")
        if problems:
            raise EditOptionsError("invalid edit options: " + "; ".join(problems))


class EditOptions(EditChoices, frozen=True, extra="forbid"):
    """The edit request sent to Imagen: the choices, the profile, and where to call back."""

    profile_key: int
    """The profile whose style is applied."""
    callback_url: str | None = None
    """Where Imagen POSTs the outcome of the edit."""

    def to_request(self) -> dict[str, Any]:
        """The flat JSON body of the edit request: only the fields that are set."""
        body = self.model_dump(mode="json", exclude_none=True, exclude={"tools"})
        body.update({tool: True for tool in TOOLS if tool in self.tools})
        return body
