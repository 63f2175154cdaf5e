"""The one way the page reads a file: a job's output, from inside that job's output folder.

Names come from the database, which took them from Imagen: a name with `..`, an absolute path
or a link pointing out of the folder is refused, and the last component is opened without
following a link, so nothing outside the folder is ever served.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path, PurePosixPath
from typing import BinaryIO

MAX_IMAGE_BYTES = 64 * 1024 * 1024
"""Larger outputs are not shown (a thumbnail is no reason to read a huge file)."""
IMAGE_SUFFIXES = (".jpg", ".jpeg")


class NotServed(LookupError):
    """The file is not one the page shows; the message says why (for the log, not the page)."""


def output_path(folder: str, name: str) -> Path:
    """The output `name` inside `folder`, resolved, or NotServed."""
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise NotServed(f"output name {name!r} leaves its folder")
    if not name.lower().endswith(IMAGE_SUFFIXES):
        raise NotServed(f"output {name!r} is not a JPEG")
    try:
        base = Path(folder).resolve(strict=True)
        resolved = (base / relative).resolve(strict=True)
    except (OSError, RuntimeError) as exc:
        raise NotServed(f"output {name!r} is not there: {exc}") from None
    if not resolved.is_relative_to(base):
        raise NotServed(f"output {name!r} links out of its folder")
    return resolved


def open_output(folder: str, name: str) -> BinaryIO:
    """The output `name` in `folder` opened for reading (a regular file, not a link), or
    NotServed."""
    path = output_path(folder, name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise NotServed(f"cannot open {path}: {exc.strerror}") from None
    file = os.fdopen(fd, "rb")
    info = os.fstat(file.fileno())
    if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
        file.close()
        raise NotServed(f"{path} is not a regular file of at most {MAX_IMAGE_BYTES} bytes")
    return file


def read_output(folder: str, name: str) -> bytes:
    """The bytes of the output `name` in `folder` (a regular file, not a link), or NotServed."""
    with open_output(folder, name) as file:
        return file.read(MAX_IMAGE_BYTES)
