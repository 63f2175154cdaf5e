"""Failures a transfer reports to its caller, worded for users and free of link signatures.

Each is also one of the product's root errors (orchestrator.errors): a full disk is Transient
(the job pauses), a file that cannot be moved is Refused (that file fails). Callers that catch
TransferError or one of its kinds keep working unchanged.
"""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.errors import OrchestratorError, Refused, Transient

_URL_QUERY = re.compile(r"(?i)\b(https?://[^\s?#\"'<>]*)[?#][^\s\"'<>]*")


def redact_urls(text: str) -> str:
    """`text` with the query string and fragment cut from every URL it mentions.

    A presigned link's query carries its signature: a bearer credential for the object,
    so it must never reach a log line, an event or an error message.
    """
    return _URL_QUERY.sub(r"\1", text)


class TransferError(OrchestratorError):
    """Base of every transfer failure; `str()` is meant for users and holds no signature."""

    def __init__(self, message: str) -> None:
        super().__init__(redact_urls(message))


class LinkExpired(TransferError, Transient):
    """Storage answered 403: the presigned link expired (or was refused) and a fresh one is due."""

    def __init__(self, file_name: str, detail: str) -> None:
        super().__init__(f"{file_name}: storage refused the link ({detail})")
        self.detail = detail
        self.file_name = file_name


class TransferFailed(TransferError, Refused):
    """This file cannot be moved now and retrying will not help; `reason` says why."""

    def __init__(self, file_name: str, reason: str) -> None:
        super().__init__(f"{file_name}: {reason}")
        self.file_name = file_name
        self.reason = redact_urls(reason)


class TransferRefused(TransferFailed):
    """Refused at once, without retrying: what storage or the output folder offers is not
    acceptable (a redirect off http(s), a loop, an output over its size cap, a download whose
    length cannot be confirmed, something planted where a partial download belongs)."""


class OutputInTheWay(TransferError, Refused):
    """A file last written before the moment the download was told to keep (its caller's
    start) is already where the output goes: somebody else's, not replaced."""

    def __init__(self, path: Path) -> None:
        super().__init__(f"{path} is older than this download and is not replaced")
        self.path = path


class SourceChanged(TransferError, Transient):
    """The local photo no longer matches what was recorded (size or content): re-scan first."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path} changed since it was recorded: {detail}")
        self.path = path


class VerificationFailed(TransferError, Refused):
    """A download kept arriving with the wrong length or checksum, on every attempt allowed."""

    def __init__(self, file_name: str, detail: str) -> None:
        super().__init__(f"{file_name}: download failed verification: {detail}")
        self.file_name = file_name


class OutputUnwritable(TransferError, Transient):
    """The output folder cannot take the file (full, read-only, no access): fatal for the job."""

    def __init__(self, folder: Path, cause: OSError) -> None:
        super().__init__(f"cannot write to output folder {folder}: {cause.strerror or cause}")
        self.folder = folder
        self.errno = cause.errno
