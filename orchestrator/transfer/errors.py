"""Failures a transfer reports to its caller, worded for users and free of link signatures."""

from __future__ import annotations

import re
from pathlib import Path

_URL_QUERY = re.compile(r"(?i)\b(https?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")


def redact_urls(text: str) -> str:
    """`text` with the query string and fragment cut from every URL it mentions.

    A presigned link's query carries its signature: a bearer credential for the object,
    so it must never reach a log line, an event or an error message.
    """
    return _URL_QUERY.sub(r"\1", text)


class TransferError(Exception):
    """Base of every transfer failure; `str()` is meant for users and holds no signature."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_urls(message))


class LinkExpired(TransferError):
    """Storage answered 403: the presigned link expired (or was refused) and a fresh one is due."""

    def __init__(self, file_name: str, detail: str) -> None:
        super().__init__(f"{file_name}: storage refused the link ({detail})")
        self.file_name = file_name


class TransferFailed(TransferError):
    """This file cannot be moved now and retrying will not help; `reason` says why."""

    def __init__(self, file_name: str, reason: str) -> None:
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = redact_urls(reason)


class SourceChanged(TransferError):
    """The local photo no longer matches what was recorded (size or content): re-scan first."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path} changed since it was recorded: {detail}")
        self.path = path


class VerificationFailed(TransferError):
    """A download kept arriving with the wrong length or checksum, on every attempt allowed."""

    def __init__(self, file_name: str, detail: str) -> None:
        super().__init__(f"{file_name}: download failed verification: {detail}")
        self.file_name = file_name


class OutputUnwritable(TransferError):
    """The output folder cannot take the file (full, read-only, no access): fatal for the job."""

    def __init__(self, folder: Path, cause: OSError) -> None:
        super().__init__(f"cannot write to output folder {folder}: {cause.strerror or cause}")
        self.folder = folder
        self.errno = cause.errno
