"""What a stage is: one declaration of its states, its step, its photos' phase, and when it
applies. The engine's steps, the order of stages and the transition table all come from the
ordered list of these in `workflow/pipeline.py`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from orchestrator.spec import JobSpec

if TYPE_CHECKING:
    from orchestrator.workflow.context import JobContext

Step = Callable[["JobContext"], Awaitable[None]]
"""Runs while the job is in one of the stage's states; ends with `ctx.finish_stage(...)`."""


@dataclass(frozen=True)
class Stage:
    """One stage of a job's journey."""

    name: str
    """What the user sees (progress, history), e.g. "upload"."""
    states: tuple[str, ...]
    """The states it owns, in order; a job enters the stage in the first one."""
    step: Step
    """Does the stage's work from whichever of its states the job is in."""
    phase: str | None = None
    """The per-photo phase it records; a photo is done for the stage once that phase is."""
    applies: Callable[[JobSpec], bool] | None = None
    """Whether a job's spec asks for the stage; None: every job goes through it."""
    waiting: frozenset[str] = field(default_factory=frozenset)
    """Its states in which nothing runs and the job only waits (for Imagen, for a person)."""
