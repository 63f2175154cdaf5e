"""Output file names: a name Imagen sends back must be one plain component inside the folder."""

from __future__ import annotations

from pathlib import Path

from orchestrator.transfer.errors import TransferFailed

PARTIAL_SUFFIX = ".partial"
"""Appended to a download's name while it is incomplete or unverified."""
ETAG_SUFFIX = ".partial.etag"
"""Appended to a download's name for the sidecar that remembers which object the partial holds."""

_NAME_MAX = 255


def check_output_name(file_name: str) -> str:
    """`file_name` itself if it is safe to create inside an output folder; else TransferFailed.

    Refused: empty, "." and "..", anything with a path separator or NUL (which also rules out
    absolute paths), and names too long to carry the temporary suffixes.
    """
    reason = None
    if file_name in ("", ".", ".."):
        reason = "not a file name"
    elif "/" in file_name or "\\" in file_name:
        reason = "contains a path separator"
    elif "\x00" in file_name:
        reason = "contains a NUL character"
    elif len(file_name.encode("utf-8", "surrogateescape")) + len(ETAG_SUFFIX) > _NAME_MAX:
        reason = "too long"
    if reason is not None:
        raise TransferFailed(repr(file_name), f"refusing this output name: {reason}")
    return file_name


def partial_path(folder: Path, file_name: str) -> Path:
    """Where the download of `file_name` is written until it is verified."""
    return folder / (file_name + PARTIAL_SUFFIX)


def etag_path(folder: Path, file_name: str) -> Path:
    """Where the ETag of the object behind a partial download is kept, for a safe resume."""
    return folder / (file_name + ETAG_SUFFIX)
