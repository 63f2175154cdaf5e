"""The job's states and the one table of allowed transitions between them."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    """Where a job stands; the order of the happy path is the order of declaration."""

    QUEUED = "queued"
    PROJECT_CREATED = "project_created"
    UPLOADING = "uploading"
    UPLOADED = "uploaded"
    EDIT_REQUESTED = "edit_requested"
    EDITING = "editing"
    EDITED = "edited"
    DOWNLOADING_EDITS = "downloading_edits"
    EXPORT_REQUESTED = "export_requested"
    EXPORTING = "exporting"
    EXPORTED = "exported"
    DOWNLOADING_EXPORTS = "downloading_exports"
    TAGGING = "tagging"
    DELIVERING = "delivering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[JobState] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
)
"""States a job never leaves on its own (`retry` may move a failed job back)."""

WAITING_STATES: frozenset[JobState] = frozenset({JobState.EDITING, JobState.EXPORTING})
"""States in which Imagen works and the job only waits."""

_S = JobState
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    _S.QUEUED: frozenset({_S.PROJECT_CREATED}),
    _S.PROJECT_CREATED: frozenset({_S.UPLOADING}),
    _S.UPLOADING: frozenset({_S.UPLOADED}),
    _S.UPLOADED: frozenset({_S.EDIT_REQUESTED}),
    _S.EDIT_REQUESTED: frozenset({_S.EDITING}),
    _S.EDITING: frozenset({_S.EDITED}),
    _S.EDITED: frozenset({_S.DOWNLOADING_EDITS}),
    _S.DOWNLOADING_EDITS: frozenset({_S.EXPORT_REQUESTED, _S.TAGGING, _S.DELIVERING,
                                     _S.COMPLETED}),
    _S.EXPORT_REQUESTED: frozenset({_S.EXPORTING}),
    _S.EXPORTING: frozenset({_S.EXPORTED}),
    _S.EXPORTED: frozenset({_S.DOWNLOADING_EXPORTS}),
    _S.DOWNLOADING_EXPORTS: frozenset({_S.TAGGING, _S.DELIVERING, _S.COMPLETED}),
    _S.TAGGING: frozenset({_S.DELIVERING, _S.COMPLETED}),
    _S.DELIVERING: frozenset({_S.COMPLETED}),
    _S.COMPLETED: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
}
"""Forward moves of the happy path; skipped stages are edges too (e.g. no export asked)."""

# Any live state may fail or be cancelled; `retry` brings a failed job back to where it stopped.
for _state in JobState:
    if _state not in TERMINAL_STATES:
        TRANSITIONS[_state] = TRANSITIONS[_state] | {_S.FAILED, _S.CANCELLED}
TRANSITIONS[_S.FAILED] = frozenset(
    {s for s in JobState if s not in TERMINAL_STATES} | {_S.CANCELLED}
)


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: always a bug, never user error."""


def check_transition(current: JobState, new: JobState) -> None:
    """Raise IllegalTransition unless `current -> new` is in the table."""
    if new not in TRANSITIONS[current]:
        raise IllegalTransition(f"illegal job transition {current.value} -> {new.value}")
