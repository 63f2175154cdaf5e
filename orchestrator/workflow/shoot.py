"""Reading a shoot folder: which photos go to Imagen, as which jobs, and what is refused."""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.imagen.files import image_type_of
from orchestrator.imagen.models import ImageType

OUTPUT_FOLDERS = ("edited", "exported")
"""Folders of a shoot that hold our own outputs and are never read as input."""


class ShootError(ValueError):
    """The folder cannot become jobs as it is; the message says what to change."""


@dataclass(frozen=True)
class FoundPhoto:
    """A supported photo of the shoot folder."""

    path: Path
    rel_path: str
    file_name: str
    size: int
    mtime_ns: int


@dataclass
class ShootScan:
    """What a shoot folder holds: photos by image type, and what was skipped."""

    folder: Path
    photos: dict[ImageType, list[FoundPhoto]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)


def scan_shoot(folder: Path) -> ShootScan:
    """Walk the folder (subfolders too) and sort its photos into RAW and JPEG.

    Hidden files and our own output folders are ignored; unsupported files are listed in
    `skipped`. Raises ShootError for a missing or empty folder and for names Imagen or the
    output folder could not tell apart.
    """
    if not folder.exists():
        raise ShootError(f"folder {folder} does not exist")
    if not folder.is_dir():
        raise ShootError(f"{folder} is not a folder: give the folder that holds the photos")
    scan = ShootScan(folder=folder)
    by_type: dict[ImageType, list[FoundPhoto]] = defaultdict(list)
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")
                         and not (root == str(folder) and d in OUTPUT_FOLDERS))
        # Plain strings here: a 10,000-photo folder is scanned on every run and resume.
        inside = os.path.relpath(root, folder)
        prefix = "" if inside == "." else inside.replace(os.sep, "/") + "/"
        for name in sorted(files):
            if name.startswith("."):
                continue
            rel = prefix + name
            kind = image_type_of(name)
            if kind is None:
                scan.skipped.append(rel)
                continue
            full = os.path.join(root, name)
            try:
                stat = os.stat(full)
            except FileNotFoundError:
                continue  # removed while the folder was being read
            by_type[kind].append(FoundPhoto(Path(full), rel, name, stat.st_size,
                                            stat.st_mtime_ns))
    if not by_type:
        hint = f" ({len(scan.skipped)} unsupported files skipped)" if scan.skipped else ""
        raise ShootError(f"no supported photos in {folder}{hint}: Imagen takes RAW files "
                         "(.CR2, .NEF, .ARW, .DNG, …) and JPEGs")
    for kind, photos in by_type.items():
        _refuse_clashing_names(kind, photos)
    scan.photos = dict(sorted(by_type.items()))
    return scan


def _refuse_clashing_names(kind: ImageType, photos: list[FoundPhoto]) -> None:
    # Imagen keys files by name within a project, and the outputs are named after the stem
    # (IMG_1.CR2 -> IMG_1.xmp), so two files may share neither, in any letter case.
    clashes: list[str] = []
    for stem_only in (False, True):
        groups: dict[str, list[str]] = defaultdict(list)
        for photo in photos:
            name = photo.file_name.lower()
            groups[os.path.splitext(name)[0] if stem_only else name].append(photo.rel_path)
        clashes += [", ".join(paths) for paths in groups.values() if len(paths) > 1]
    if clashes:
        listed = "\n  ".join(sorted(set(clashes)))
        raise ShootError(
            f"these {kind.value} photos would get the same name at Imagen or in the output "
            f"folder:\n  {listed}\nrename one of each group (or move it to another shoot) "
            "and run again")
