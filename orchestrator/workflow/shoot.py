"""Reading a shoot folder: which photos go to Imagen, as which jobs, and what is refused."""

from __future__ import annotations

import os
import unicodedata
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol, TypeVar

from orchestrator.errors import OperatorRefusal
from orchestrator.imagen.files import (
    SIGNATURE_BYTES,
    content_matches,
    describe_content,
    image_type_of,
    name_refusal,
    shown_name,
)
from orchestrator.imagen.models import ImageType
from orchestrator.transfer.localfiles import NotAFile, kind_of, open_regular
from orchestrator.words import plural

OUTPUT_FOLDERS = ("edited", "exported", "delivered")
"""Folders of a shoot that hold our own outputs and are never read as input."""

SHOWN_REFUSALS = 5
"""Refused files named in one message before the rest are summed up as "…"."""


class ShootError(OperatorRefusal, ValueError):
    """The folder cannot become jobs as it is; the message says what to change."""


@dataclass(frozen=True)
class FoundPhoto:
    """A supported photo of the shoot folder."""

    location: str
    """Its path as the folder listing gave it (a Path made only when asked for: making one
    for each of 10,000 photos was a sixth of a scan)."""
    rel_path: str
    file_name: str
    size: int
    mtime_ns: int

    @property
    def path(self) -> Path:
        """Where the photo is."""
        return Path(self.location)


@dataclass(frozen=True)
class RefusedFile:
    """A file (or folder) of the shoot that is not sent, and why; `name` is printable."""

    name: str
    reason: str

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})"


@dataclass
class ShootScan:
    """What a shoot folder holds: photos by image type, what was skipped and what refused.

    `skipped` are files Imagen does not take (videos, sidecars); `refused` are files that look
    like photos but must not be sent (links, pipes, empty files, content that is not what the
    name says, names that are not UTF-8), each with its reason.
    """

    folder: Path
    photos: dict[ImageType, list[FoundPhoto]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    refused: list[RefusedFile] = field(default_factory=list)


PREFIX_OPTION = "--prefix-subfolders"
"""The option that sends photos of subfolders under names prefixed with their subfolder."""


def scan_shoot(
    folder: Path,
    *,
    prefix_subfolders: bool = False,
    known: Mapping[str, tuple[int, int]] | None = None,
) -> ShootScan:
    """Walk the folder (subfolders too) and sort its photos into RAW and JPEG.

    Hidden files and our own output folders are ignored; unsupported files are listed in
    `skipped`, and files that must not be sent in `refused`. Links are never followed, and
    each photo's first bytes are checked against its type. Raises ShootError for a missing or
    empty folder, for photo names Imagen refuses (all of them at once) and for names Imagen or
    the output folder could not tell apart, unless `prefix_subfolders` names every photo of a
    subfolder after it at Imagen ("Card 1_IMG_0001.CR2"; the outputs come back to the photo's
    own name and place).

    `known` gives (size, mtime_ns) by relative path of photos a job recorded: one of them
    still a regular file of that size and time is not opened again (its first bytes were
    checked when it was recorded); resuming a 10,000-photo shoot reads no photo.
    """
    if not folder.exists():
        raise ShootError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise ShootError(f"{folder} is not a folder: give the folder that holds the photos")
    if not _is_utf8(str(folder)):
        raise ShootError(
            f"the folder's path {printable(str(folder))} is not valid UTF-8: "
            "rename it (or the folders above it) and run again"
        )
    scan = ShootScan(folder=folder)
    by_type: dict[ImageType, list[FoundPhoto]] = defaultdict(list)
    unnameable: list[str] = []
    top = str(folder)
    real_top = os.path.realpath(top)
    # An explicit stack rather than recursion: a hostile folder may nest thousands deep.
    pending = [(top, "")]
    while pending:
        directory, prefix = pending.pop()
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda entry: entry.name)
        except OSError as exc:
            scan.refused.append(
                RefusedFile(
                    printable(prefix.rstrip("/") or "."),
                    f"cannot read this folder: {exc.strerror or exc}",
                )
            )
            continue
        subfolders: list[tuple[str, str]] = []
        for entry in entries:
            name = entry.name
            if name.startswith(".") or (not prefix and name in OUTPUT_FOLDERS):
                continue
            rel = prefix + name
            if entry.is_symlink():
                to_folder = os.path.isdir(entry.path)  # False for a broken or looping link
                if to_folder or image_type_of(name) is not None:
                    scan.refused.append(
                        RefusedFile(printable(rel), _link_reason(entry.path, real_top, to_folder))
                    )
                else:
                    scan.skipped.append(printable(rel))
                continue
            if entry.is_dir(follow_symlinks=False):
                if _is_utf8(name):
                    subfolders.append((entry.path, rel + "/"))
                else:
                    scan.refused.append(RefusedFile(printable(rel), _NOT_UTF8_FOLDER))
                continue
            kind = image_type_of(name)
            if kind is None:
                scan.skipped.append(printable(rel))
                continue
            if not _is_utf8(name):
                scan.refused.append(RefusedFile(printable(rel), _NOT_UTF8))
                continue
            refusal = name_refusal(name)
            if refusal is not None:
                unnameable.append(f"{shown_name(rel)} ({refusal})")
                continue
            found = _read_photo(entry, rel, known.get(rel) if known else None)
            if isinstance(found, FoundPhoto) and prefix_subfolders and prefix:
                sent = prefixed_name(rel)
                refusal = name_refusal(sent)
                if refusal is not None:
                    unnameable.append(f"{shown_name(sent)} (sent for {shown_name(rel)}: {refusal})")
                    continue
                found = replace(found, file_name=sent)
            if isinstance(found, FoundPhoto):
                by_type[kind].append(found)
            elif found is not None:
                scan.refused.append(RefusedFile(printable(rel), found))
        pending.extend(reversed(subfolders))
    if unnameable:
        listed = "\n  ".join(unnameable)
        raise ShootError(
            f"Imagen refuses the names of {plural(len(unnameable), 'photo')}:\n  {listed}\n"
            "rename them (letters, digits, spaces, - and _ are safe) and run again; "
            "nothing was sent"
        )
    if not by_type:
        raise ShootError(
            f"no supported photos in {folder}{_summary(scan)}: Imagen takes RAW "
            "files (.CR2, .NEF, .ARW, .DNG, …) and JPEGs"
        )
    for kind, photos in by_type.items():
        _refuse_clashing_names(kind, photos)
    scan.photos = dict(sorted(by_type.items()))
    return scan


class RecordedFile(Protocol):
    """A photo as a job recorded it: enough to recognise it under another name."""

    @property
    def rel_path(self) -> str: ...
    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...


R = TypeVar("R", bound=RecordedFile)


def match_renamed(missing: Sequence[R], found: Sequence[FoundPhoto]) -> list[tuple[R, FoundPhoto]]:
    """Recorded photos that are gone, paired with the new file each was renamed to.

    `found` are the folder's photos the job did not record. A rename keeps a file's size and
    modification time to the nanosecond, so a missing photo and a new file that share both (and
    share them with no other) are one photo.
    """
    by_stamp: dict[tuple[int, int], list[FoundPhoto]] = defaultdict(list)
    for candidate in found:
        by_stamp[(candidate.size, candidate.mtime_ns)].append(candidate)
    gone: dict[tuple[int, int], list[R]] = defaultdict(list)
    for recorded in missing:
        gone[(recorded.size, recorded.mtime_ns)].append(recorded)
    return [
        (old[0], new[0])
        for stamp, old in gone.items()
        if len(old) == 1 and len(new := by_stamp.get(stamp, [])) == 1
    ]


def prefixed_name(rel_path: str) -> str:
    """The name a photo of a subfolder is sent to Imagen under: its folders joined by "_"
    before its name ("Ceremony/Card 1/IMG_0001.CR2" -> "Ceremony_Card 1_IMG_0001.CR2")."""
    return rel_path.replace("/", "_")


def printable(name: str) -> str:
    """A file name as text anyone can read: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


_NOT_UTF8 = "its name is not valid UTF-8 and cannot be stored or sent: rename it"
_NOT_UTF8_FOLDER = "this folder's name is not valid UTF-8, so its photos are left out: rename it"


def _is_utf8(name: str) -> bool:
    # Names that are not UTF-8 reach Python with their bad bytes as lone surrogates.
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _link_reason(path: str, real_top: str, is_folder: bool) -> str:
    what = "folder" if is_folder else "file"
    target = os.path.realpath(path)
    if os.path.commonpath([real_top, target]) != real_top:
        # Following it would send (or read) whatever the link names, e.g. the daemon's own files.
        return (
            f"a link to a {what} outside the shoot; links are not followed: copy the "
            f"{what} into the shoot instead"
        )
    return (
        f"a link to a {what} inside the shoot; links are not followed, the {what} it "
        "points to is read where it is"
    )


def _read_photo(
    entry: os.DirEntry[str], rel: str, recorded: tuple[int, int] | None
) -> FoundPhoto | str | None:
    """The photo at `entry`, or why it is refused; None if it vanished while being read.

    `recorded` is the (size, mtime_ns) a job recorded for it: if the file still has them, it
    is the photo that was checked then, and it is not opened again.
    """
    if recorded is not None and entry.is_file(follow_symlinks=False):
        try:
            status = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError:
            status = None
        if status is not None and (status.st_size, status.st_mtime_ns) == recorded:
            return FoundPhoto(entry.path, rel, entry.name, status.st_size, status.st_mtime_ns)
    if not entry.is_file(follow_symlinks=False):
        # Never opened: a device may act on open, and a pipe is no photo.
        try:
            kind = kind_of(entry.stat(follow_symlinks=False).st_mode)
        except FileNotFoundError:
            return None
        except OSError:
            kind = "not a file"
        return f"{kind}, not a regular file: only regular files are sent"
    try:
        descriptor, status = open_regular(entry.path)
    except FileNotFoundError:
        return None  # removed while the folder was being read
    except NotAFile as exc:
        return f"{exc.kind}, not a regular file: only regular files are sent"
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    try:
        head = os.read(descriptor, SIGNATURE_BYTES) if status.st_size else b""
    except OSError as exc:
        return f"cannot read it: {exc.strerror or exc}"
    finally:
        os.close(descriptor)
    if status.st_size == 0:
        return "empty (0 bytes): copy it again from the card, or leave it out"
    if not content_matches(entry.name, head):
        extension = os.path.splitext(entry.name)[1].lstrip(".").upper()
        return (
            f"its content is not a {extension} photo but {describe_content(head)}: check "
            "the file, or give it its real extension"
        )
    return FoundPhoto(entry.path, rel, entry.name, status.st_size, status.st_mtime_ns)


def _summary(scan: ShootScan) -> str:
    parts = []
    if scan.refused:
        listed = "; ".join(str(r) for r in scan.refused[:SHOWN_REFUSALS])
        more = " …" if len(scan.refused) > SHOWN_REFUSALS else ""
        parts.append(f"{len(scan.refused)} refused: {listed}{more}")
    if scan.skipped:
        parts.append(f"{len(scan.skipped)} unsupported files skipped")
    return f" ({'; '.join(parts)})" if parts else ""


def _refuse_clashing_names(kind: ImageType, photos: list[FoundPhoto]) -> None:
    # Imagen keys files by name within a project, and the outputs are named after the stem
    # (IMG_1.CR2 -> IMG_1.xmp), so two files may share neither, in any letter case or in
    # either Unicode form (café as one character or as e plus an accent, as macOS writes it).
    clashes: list[str] = []
    for stem_only in (False, True):
        groups: dict[str, list[str]] = defaultdict(list)
        for photo in photos:
            name = unicodedata.normalize("NFC", photo.file_name).casefold()
            groups[os.path.splitext(name)[0] if stem_only else name].append(photo.rel_path)
        clashes += [", ".join(paths) for paths in groups.values() if len(paths) > 1]
    if clashes:
        listed = "\n  ".join(sorted(set(clashes)))
        example = "CR2" if kind is ImageType.RAW else "JPG"
        raise ShootError(
            f"these {kind.value} photos would get the same name at Imagen or in the output "
            f"folder:\n  {listed}\nrename one of each group (or move it to another shoot) "
            f"and run again, or add {PREFIX_OPTION} to send the photos of each subfolder under "
            f"names prefixed with it (Card 1_IMG_0001.{example}); the outputs keep the photos' "
            "own names and folders"
        )
