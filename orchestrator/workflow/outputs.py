"""Where a job's outputs live: what each download stage fetches and where each output goes in
the job's layout, and whether the folders can take what a job will bring back. Shared by
planning (a new job's folders, the check before anything is sent), the download stages, the
stages that read the outputs (tag, deliver) and the web page.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from orchestrator.imagen.files import UnsafeFileName, keep_source_case, safe_output_path
from orchestrator.imagen.models import DownloadLink, ImageType
from orchestrator.spec import JobSpec, OutputLayout
from orchestrator.store.models import Job
from orchestrator.store.queries import PhotoRecord

if TYPE_CHECKING:
    from orchestrator.imagen.client import ImagenClient


def wants_export(spec: JobSpec) -> bool:
    """Whether the job asked for JPEG exports: the export and its download share this one
    function, so a job skips both or neither."""
    return spec.export


@dataclass(frozen=True)
class Outputs:
    """Which outputs a download stage fetches and where they go."""

    phase: str
    """The per-photo phase recorded for a fetched output ("edit", "export")."""
    stage: str
    """The stage's name in progress and history."""
    links: Callable[[ImagenClient, str], Awaitable[list[DownloadLink]]]
    """Asks Imagen for the project's links to these outputs."""
    folder: Callable[[Job], str]
    """Where the job's outputs of this kind go."""


@dataclass(frozen=True)
class Places:
    """Where each output of a stage goes, by the job's output layout."""

    folder: Path
    """The stage's output folder (edited/ or exported/)."""
    source: Path
    """The shoot folder, where sidecars go beside their RAWs."""
    layout: OutputLayout | None
    """None for a job from before layouts: flat, under Imagen's names."""
    phase: str

    def of(self, photo: PhotoRecord, name: str) -> Path:
        """The path of `photo`'s output that Imagen calls `name`; UnsafeFileName if the name
        could climb out of its folder."""
        safe_output_path(self.folder, name)
        if self.layout is None:
            return self.folder / name
        own = PurePath(photo.rel_path)
        # A photo sent under a prefixed name (--prefix-subfolders) gets its own name back,
        # unless the outputs lie side by side, where only the prefix keeps them apart.
        local = keep_source_case(name, own.name if self.layout.subfolders else photo.file_name)
        if self.beside(local):
            local = keep_source_case(name, own.name)
        sub = own.parent
        if self.beside(local):
            return self.source / sub / local
        return (self.folder / sub if self.layout.subfolders else self.folder) / local

    def beside(self, name: str) -> bool:
        """Whether this output is a sidecar that goes beside its RAW."""
        return (
            self.layout is not None
            and self.layout.sidecars == "beside"
            and self.phase == "edit"
            and name.lower().endswith(".xmp")
        )


EDITS = Outputs(
    "edit",
    "download_edits",
    lambda imagen, uuid: imagen.edit_download_links(uuid),
    lambda job: job.edited_dir,
)
EXPORTS = Outputs(
    "export",
    "download_exports",
    lambda imagen, uuid: imagen.export_download_links(uuid),
    lambda job: job.exported_dir,
)


def output_file(job: Job, spec: JobSpec, photo: PhotoRecord, phase: str) -> Path | None:
    """Where the photo's downloaded output of `phase` (edit or export) is on disk, if it was
    downloaded: in the layout its job was created with (subfolders, sidecars beside)."""
    record = photo.phase(phase)
    if record is None or record.done_at is None or not record.output:
        return None
    outputs = {EDITS.phase: EDITS, EXPORTS.phase: EXPORTS}[phase]
    places = Places(Path(outputs.folder(job)), Path(job.source), spec.outputs, phase)
    try:
        return places.of(photo, record.output)
    except UnsafeFileName:
        return None


def output_root(source: Path, spec: JobSpec) -> Path:
    """The folder that holds a job's edited/, exported/ and delivered/: `--output`'s, else the
    shoot folder."""
    folder = spec.outputs.folder if spec.outputs else None
    return Path(folder) if folder else source


def new_job_folders(source: Path, spec: JobSpec, sub: str) -> tuple[Path, Path]:
    """A new job's edited/ and exported/ folders (`sub`: the image type's subfolder of a
    shoot with RAW and JPEG, else empty)."""
    root = output_root(source, spec)
    return root / "edited" / sub, root / "exported" / sub


SIDECAR_BYTES = 64 * 1024
"""Room kept for one RAW edit: Imagen's .xmp sidecars are a few tens of kilobytes."""
DELIVERY_BYTES = 8 * 1024
"""Room kept per delivered photo for delivery.json and index.html."""
RAW_EXPORT_SHARE = 0.5
"""An export of a RAW is a full-size JPEG: about half the RAW's size (a DNG or JPEG edit,
and a JPEG's export, about the input's)."""
MARGIN_SHARE = 0.10
MARGIN_BYTES = 32 * 1024 * 1024
"""Room left over on each disk beyond the estimate: a tenth of it, and at least this much
(exiftool rewrites files beside themselves; the system needs some too)."""


@dataclass(frozen=True)
class Need:
    """Room a job's outputs will take in one folder."""

    folder: Path
    """Where they go (made when the first one arrives)."""
    nbytes: int
    """About how many bytes they take."""
    what: str
    """What goes there, for the message: "edits", "exports", "sidecars", "delivery list"."""


def job_needs(
    *,
    image_type: ImageType,
    spec: JobSpec,
    source: Path,
    edited: Path,
    exported: Path,
    to_edit: Iterable[tuple[str, int]],
    to_export: Iterable[int],
    to_deliver: int,
) -> list[Need]:
    """What a job will bring back, by folder: `to_edit`, the file names and sizes of the photos
    whose edits are still to come; `to_export`, the sizes of those whose exports are; and
    `to_deliver`, how many photos are still to be delivered."""
    beside = bool(spec.outputs and spec.outputs.sidecars == "beside")
    edits = sidecars = 0
    for name, size in to_edit:
        if image_type is ImageType.RAW and not name.lower().endswith(".dng"):
            sidecars += SIDECAR_BYTES
        else:
            edits += size
    needs: list[Need] = []
    if edits or (sidecars and not beside):
        needs.append(Need(edited, edits + (0 if beside else sidecars), "edits"))
    if sidecars and beside:
        needs.append(Need(source, sidecars, "sidecars"))
    if spec.export:
        share = RAW_EXPORT_SHARE if image_type is ImageType.RAW else 1.0
        needs.append(Need(exported, int(sum(to_export) * share), "exports"))
    if spec.deliver is not None and to_deliver:
        from orchestrator.integrations.delivery_files import delivered_folder  # loads imgix's

        delivered = delivered_folder(str(source), str(exported))
        needs.append(Need(delivered, to_deliver * DELIVERY_BYTES, "delivery list"))
    return needs


def margin(nbytes: int) -> int:
    """The room kept free beyond an estimate of `nbytes`."""
    return max(int(nbytes * MARGIN_SHARE), MARGIN_BYTES)


def megabytes(nbytes: float) -> str:
    """A size as messages about room say it: "2.1 MB"."""
    return f"{nbytes / 1e6:,.1f} MB"


def room_refusals(needs: Iterable[Need]) -> list[str]:
    """Why the folders cannot take what the jobs will bring back (none: they can): a folder
    that cannot be made or written to, a disk without room for the estimate and its margin,
    with how much is missing. Blocking: run it in a thread."""
    problems: list[str] = []
    by_disk: dict[int, tuple[Path, int, list[Path]]] = {}
    for folder, nbytes in _merged(needs).items():
        existing = _nearest_existing(folder)
        problem = _unwritable(folder, existing)
        if problem:
            problems.append(problem)
            continue
        stat = os.stat(existing)
        anchor, total, folders = by_disk.get(stat.st_dev, (existing, 0, []))
        by_disk[stat.st_dev] = (anchor, total + nbytes, [*folders, folder])
    for anchor, total, folders in by_disk.values():
        disk = os.statvfs(anchor)
        free = disk.f_bavail * disk.f_frsize
        wanted = total + margin(total)
        if wanted > free:
            names = ", ".join(str(f) for f in folders[:3]) + (" …" if len(folders) > 3 else "")
            problems.append(
                f"not enough room for the outputs in {names}: about {megabytes(total)} will come "
                f"back (with {megabytes(wanted - total)} kept free), {megabytes(free)} is free "
                f"on that disk; {megabytes(wanted - free)} missing. Free space there, or give "
                "--output DIR on a disk with room"
            )
    return problems


def _merged(needs: Iterable[Need]) -> dict[Path, int]:
    merged: dict[Path, int] = {}
    for need in needs:
        merged[need.folder] = merged.get(need.folder, 0) + need.nbytes
    return merged


def _nearest_existing(folder: Path) -> Path:
    """The folder itself if it exists, else its nearest ancestor that does."""
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return candidate
    return Path(folder.anchor)


def _unwritable(folder: Path, existing: Path) -> str | None:
    """Why outputs cannot be written into `folder` (whose nearest existing self or ancestor is
    `existing`), tried by writing a file there; None if they can."""
    if not existing.is_dir():
        return (
            f"cannot write the outputs into {folder}: {existing} is a file, not a folder; "
            "move it away or give --output DIR"
        )
    try:
        handle, probe = tempfile.mkstemp(prefix=".orchestrator-write-test-", dir=existing)
    except OSError as exc:
        where = folder if existing == folder else f"{folder} (to be made in {existing})"
        return (
            f"cannot write the outputs into {where}: {exc.strerror or exc}; make it "
            "writable, or give --output DIR to put them elsewhere"
        )
    os.close(handle)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None
