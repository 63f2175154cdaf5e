"""What the engine reports while it works: stages, bytes and files, notes.

The engine and the transfers call a `ProgressSink`; the CLI supplies one that draws Rich bars,
prints plain lines or emits JSON, and the daemon one that feeds metrics.
"""

from __future__ import annotations

from typing import Protocol


class ProgressSink(Protocol):
    """Receives progress from the engine; every method must be cheap and must not raise."""

    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        """A stage of job `job` (its display name) begins with this much work to do."""

    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        """Work was done: `files` finished and/or `nbytes` moved (may be negative on a restart)."""

    def stage_finished(self, job: str, stage: str) -> None:
        """The stage is done."""

    def note(self, job: str, message: str, *, level: str = "info") -> None:
        """A line worth showing the user (a skipped file, a retry, a waiting edit)."""

    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        """Imagen works on the job: its latest status and percent done, if it says."""


class NullProgress:
    """A sink that ignores everything (tests, the daemon without metrics)."""

    def stage_started(self, job: str, stage: str, *, files: int, total_bytes: int | None) -> None:
        return None

    def advanced(self, job: str, stage: str, *, files: int = 0, nbytes: int = 0) -> None:
        return None

    def stage_finished(self, job: str, stage: str) -> None:
        return None

    def note(self, job: str, message: str, *, level: str = "info") -> None:
        return None

    def waiting(self, job: str, stage: str, percent: float | None, status: str) -> None:
        return None
