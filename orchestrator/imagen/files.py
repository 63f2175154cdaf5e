"""Which local files Imagen accepts, and safe local names for the files it sends back."""

from __future__ import annotations

import os
from pathlib import Path, PureWindowsPath

from orchestrator.imagen.models import ImageType

RAW_EXTENSIONS: frozenset[str] = frozenset({
    ".dng", ".nef", ".cr2", ".arw", ".nrw", ".crw", ".srf", ".sr2", ".orf", ".raw",
    ".rw2", ".raf", ".ptx", ".pef", ".rwl", ".srw", ".cr3", ".3fr", ".fff",
})
"""Extensions (lower case) of the RAW formats Imagen edits; DNG counts as RAW."""

JPEG_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg"})
"""Extensions (lower case) of the JPEG files Imagen edits."""


def image_type_of(name: str) -> ImageType | None:
    """The image type of a file judged by its extension, in any case; None if Imagen refuses it."""
    suffix = os.path.splitext(name)[1].lower()
    if suffix in RAW_EXTENSIONS:
        return ImageType.RAW
    if suffix in JPEG_EXTENSIONS:
        return ImageType.JPG
    return None


class UnsafeFileName(ValueError):
    """A file name from the API that could write outside the output folder."""


def safe_output_path(folder: Path, file_name: str) -> Path:
    """Where to save a file Imagen named `file_name`: always directly inside `folder`.

    The name comes from the network, so anything that could climb out of the folder or name a
    different one (separators of either platform, drives, NUL, dot names) is refused; refusing
    separators also refuses every absolute path.
    """
    unsafe = (
        file_name in ("", ".")
        or file_name.startswith("..")
        or "/" in file_name
        or "\\" in file_name
        or "\x00" in file_name
        or bool(PureWindowsPath(file_name).drive)
    )
    if unsafe:
        raise UnsafeFileName(f"refusing unsafe file name from Imagen: {file_name!r}")
    return folder / file_name
