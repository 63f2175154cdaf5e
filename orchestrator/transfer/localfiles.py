"""Opening local files safely: never through a link, never blocking, only regular files.

Photos come from a folder anyone may have filled (a hot folder), and the output folder may
hold files planted there, so every open of a photo, a partial download or its sidecar goes
through here: O_NOFOLLOW refuses a link in the last component, O_NONBLOCK keeps a named pipe
from hanging the open forever (and with it the worker thread and the process's shutdown), and
fstat afterwards refuses whatever is not a regular file.
"""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path

_SAFE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
# What open() answers for a link under O_NOFOLLOW (ELOOP; EMLINK on the BSDs), for a pipe or
# socket nobody reads (ENXIO, on a write-only open) and for a folder opened to write (EISDIR).
_NOT_A_FILE_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR})


class NotAFile(OSError):
    """The path names something other than a regular file: a link, a folder, a pipe, a device.

    An OSError, so every caller that already reports unreadable files reports these too; its
    `strerror` says what the path is instead.
    """

    def __init__(self, path: str | Path, kind: str) -> None:
        super().__init__(None, f"it is {kind}, not a regular file", str(path))
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.filename}: {self.strerror}"


def kind_of(mode: int) -> str:
    """What a file mode says the file is, in words ("a symbolic link", "a named pipe", …)."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a file"


def open_regular(
    path: str | Path, flags: int = os.O_RDONLY, mode: int = 0o666
) -> tuple[int, os.stat_result]:
    """A descriptor of the regular file at `path` and its fstat; NotAFile for anything else."""
    try:
        descriptor = os.open(path, flags | _SAFE_FLAGS, mode)
    except OSError as exc:
        if exc.errno in _NOT_A_FILE_ERRNOS:
            raise NotAFile(path, _kind_at(path)) from None
        raise
    try:
        status = os.fstat(descriptor)
        if not stat.S_ISREG(status.st_mode):
            raise NotAFile(path, kind_of(status.st_mode))
    except BaseException:
        os.close(descriptor)
        raise
    return descriptor, status


def open_reader(path: str | Path) -> io.FileIO:
    """The regular file at `path`, open for unbuffered reading; NotAFile for anything else."""
    descriptor, _ = open_regular(path)
    return io.FileIO(descriptor, "rb", closefd=True)


def written_before(path: Path, moment: float) -> bool:
    """Whether a regular file is at `path` that was last written before `moment` (a timestamp).

    Anything else there (nothing, a folder, a link) is for the caller's own checks to meet.
    """
    try:
        status = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(status.st_mode) and status.st_mtime < moment


def regular_stat(path: str | Path) -> os.stat_result:
    """The lstat of `path` if it is a regular file; NotAFile (a link, a pipe, …) otherwise."""
    status = os.lstat(path)
    if not stat.S_ISREG(status.st_mode):
        raise NotAFile(path, kind_of(status.st_mode))
    return status


def _kind_at(path: str | Path) -> str:
    try:
        return kind_of(os.lstat(path).st_mode)
    except OSError:
        return "not a file"
