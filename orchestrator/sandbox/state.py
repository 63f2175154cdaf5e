"""The sandbox account's projects, their files and outputs, kept in memory (bodies live on disk)."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePath

from orchestrator.sandbox.edit_rules import EditSettings
from orchestrator.sandbox.jobs import Job

RAW_EXTENSIONS = frozenset(
    {
        ".dng", ".nef", ".cr2", ".arw", ".nrw", ".crw", ".srf", ".sr2", ".orf", ".raw",
        ".rw2", ".raf", ".ptx", ".pef", ".rwl", ".srw", ".cr3", ".3fr", ".fff",
    }
)  # fmt: skip
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})

SMALL_OBJECT = 256 * 1024
"""Uploads and outputs up to this size live in memory: for thousands of tiny photos the trips
to disk, not the bytes, were the sandbox's cost. Larger ones stream to and from disk."""
MEMORY_BUDGET = 256 * 1024 * 1024
"""Most bytes of small objects held in memory at once; past it they go to disk as well."""


class MemoryBudget:
    """Bytes the sandbox may still hold in memory; shared by the loop and the output writers."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._lock = threading.Lock()

    def take(self, size: int) -> bool:
        """Reserve `size` bytes for an object kept in memory; False if it must go to disk."""
        if size > SMALL_OBJECT:
            return False
        with self._lock:
            if size > self._free:
                return False
            self._free -= size
            return True

    def give(self, size: int) -> None:
        """Return the bytes of an object no longer held."""
        with self._lock:
            self._free += size


def image_type_of(file_name: str) -> str | None:
    """ "RAW" or "JPG" for a supported file name (case-insensitive), None otherwise."""
    suffix = PurePath(file_name).suffix.lower()
    if suffix in RAW_EXTENSIONS:
        return "RAW"
    if suffix in JPEG_EXTENSIONS:
        return "JPG"
    return None


@dataclass(kw_only=True)
class StoredFile:
    """One file name of a project: where its upload lives and what the ledger says about it."""

    name: str
    path: Path
    """Where a large upload is stored."""
    data: bytes | None = None
    """A small upload's bytes, kept in memory (then nothing is at `path`)."""
    links_issued: int = 0
    uploads_completed: int = 0
    size: int | None = None
    md5_hex: str | None = None


@dataclass(frozen=True, kw_only=True)
class OutputFile:
    """One edit or export result ready for download: in memory (`data`) or on disk (`path`)."""

    name: str
    path: Path | None
    md5_hex: str
    size: int
    content_type: str
    data: bytes | None = None


@dataclass(frozen=True, kw_only=True)
class EditInput:
    """An uploaded file as it was when the edit was accepted (a hard link pins its bytes on
    disk; `data`, immutable, is the bytes of one kept in memory)."""

    name: str
    path: Path | None
    md5_hex: str
    data: bytes | None = None


@dataclass(kw_only=True)
class Project:
    """One Imagen project and everything the ledger reports about it."""

    uuid: str
    name: str
    project_id: int
    created_at: datetime
    directory: Path
    image_type: str | None = None
    files: dict[str, StoredFile] = field(default_factory=dict)
    output_owners: dict[str, str] = field(default_factory=dict)
    """Which file each export output name belongs to (kept by the links requests)."""
    settings: EditSettings | None = None
    edit: Job | None = None
    export: Job | None = None
    edit_attempts: int = 0
    edit_inputs: list[EditInput] = field(default_factory=list)
    edit_skipped: list[str] = field(default_factory=list)
    edit_outputs: dict[str, OutputFile] = field(default_factory=dict)
    export_outputs: dict[str, OutputFile] = field(default_factory=dict)
    edit_requests: int = 0
    edit_requests_rejected: int = 0
    export_requests: int = 0
    export_requests_rejected: int = 0
    downloads_completed: dict[str, Counter[str]] = field(
        default_factory=lambda: {"edit": Counter(), "export": Counter()}
    )

    @property
    def number_of_images(self) -> int:
        """How many files have been uploaded at least once."""
        return sum(1 for stored in self.files.values() if stored.uploads_completed)

    def outputs(self, area: str) -> dict[str, OutputFile]:
        """The downloadable results of "edit" or "export"."""
        return self.edit_outputs if area == "edit" else self.export_outputs

    def file(self, name: str) -> StoredFile:
        """The record for `name`, created on first use with its own storage slot."""
        stored = self.files.get(name)
        if stored is None:
            slot = f"{len(self.files):06d}"
            stored = StoredFile(name=name, path=self.directory / "uploads" / slot)
            self.files[name] = stored
        return stored


class DuplicateProjectName(ValueError):
    """A project with that name already exists."""


class ProjectStore:
    """All projects of the sandbox's single account, by uuid and by name."""

    def __init__(self, root: Path) -> None:
        self._root = root
        self.memory = MemoryBudget(MEMORY_BUDGET)
        """What small objects of every project may still take in memory."""
        self._by_uuid: dict[str, Project] = {}
        self._by_name: dict[str, Project] = {}

    def create(self, name: str | None) -> Project:
        """A new project; an unnamed one is named after its uuid, as Imagen does."""
        project_uuid = str(uuid.uuid4())
        name = name or project_uuid
        if name in self._by_name:
            raise DuplicateProjectName(f'A project named "{name}" already exists')
        directory = self._root / project_uuid
        (directory / "uploads").mkdir(parents=True)
        project = Project(
            uuid=project_uuid,
            name=name,
            project_id=len(self._by_uuid) + 1,
            created_at=datetime.now(UTC),
            directory=directory,
        )
        self._by_uuid[project_uuid] = project
        self._by_name[name] = project
        return project

    def get(self, project_uuid: str) -> Project | None:
        """The project with that uuid, if any."""
        return self._by_uuid.get(project_uuid)

    def by_name(self, name: str) -> Project | None:
        """The project with that name, if any."""
        return self._by_name.get(name)

    def all(self) -> list[Project]:
        """Every project, oldest first."""
        return list(self._by_uuid.values())
