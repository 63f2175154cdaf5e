"""What the imgix client answers and refuses with: assets, its errors, the upload size limit.

Apart from the client so that the delivery stage's declaration loads no HTTP stack.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from orchestrator.apicore.errors import ApiBadRequest
from orchestrator.errors import CredentialsRefused

MAX_SIMPLE_UPLOAD_BYTES = 30 * 1000 * 1000
"""The simple upload endpoint takes files under 30 MB; bigger ones need upload sessions."""


class ImgixPermissionMissing(CredentialsRefused):
    """imgix refused the key for one call: it is wrong, or it lacks the permission named."""


class ImgixSourceUnknown(CredentialsRefused):
    """imgix knows no Source of that id for the key (IMGIX_SOURCE_ID)."""


class ImgixConflict(ApiBadRequest):
    """imgix refused a call because of what it already holds (an asset at the path, a purge)."""


@dataclass(frozen=True)
class Asset:
    """What imgix holds at one origin path, as far as delivery cares."""

    origin_path: str
    file_size: int | None
    categories: tuple[str, ...]
    custom_fields: Mapping[str, str]
    description: str | None
