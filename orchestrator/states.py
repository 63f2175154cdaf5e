"""A job's states, and the one table of allowed moves between them.

The product's states are named here so that every room (the store included) can speak of them;
which moves are allowed is derived from the ordered stages (`workflow/pipeline.py`) and held
in one `Transitions` table. A state change is only ever written as a `Move` that table made.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum


class JobState(StrEnum):
    """The product's states; the order of the happy path is the order of declaration."""

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
    REVIEWING = "reviewing"
    DELIVERING = "delivering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATES: frozenset[str] = frozenset(
    {JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED}
)
"""States a job never leaves on its own (`retry` may move a failed job back)."""


class IllegalTransition(RuntimeError):
    """A state change the table does not allow: always a bug, never user error."""


@dataclass(frozen=True)
class Move:
    """One checked state change; only `Transitions.move` makes them, the store writes them."""

    from_state: str
    to_state: str


class Transitions:
    """The one table of allowed moves: the stages' forward edges, plus failing, cancelling,
    and `retry` bringing a failed job back to any live state."""

    def __init__(self, forward: Mapping[str, Iterable[str]]) -> None:
        live = set(forward) - TERMINAL_STATES
        edges = {state: frozenset(targets) for state, targets in forward.items()}
        for state in live:
            edges[state] = edges[state] | {JobState.FAILED, JobState.CANCELLED}
        edges[JobState.COMPLETED] = frozenset()
        edges[JobState.CANCELLED] = frozenset()
        edges[JobState.FAILED] = frozenset(live | {JobState.CANCELLED})
        self._edges = edges

    @property
    def states(self) -> frozenset[str]:
        """Every state the table knows."""
        return frozenset(self._edges)

    def allowed(self, current: str) -> frozenset[str]:
        """Where a job in `current` may go."""
        return self._edges.get(current, frozenset())

    def move(self, current: str, new: str) -> Move:
        """The move `current -> new`; IllegalTransition unless the table has it."""
        if new not in self.allowed(current):
            raise IllegalTransition(f"illegal job transition {current} -> {new}")
        return Move(current, new)
