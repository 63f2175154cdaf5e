"""Where a job's outputs live: what each download stage fetches and where each output goes in
the job's layout. Shared by the download stages, the stages that read the outputs (tag,
deliver) and the web page.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from orchestrator.imagen.files import UnsafeFileName, keep_source_case, safe_output_path
from orchestrator.imagen.models import DownloadLink
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
