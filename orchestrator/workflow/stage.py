"""What a stage is: one declaration of its states, its step, its photos' phase, when it applies,
what it requires of the process, the words the user sees for it, the crash points it passes and
the model of its photos' details. The engine's steps, the order of stages, the transition
table, the one check of requirements, the services the wiring builds and the labels all come
from the ordered list of these in `workflow/pipeline.py`."""

from __future__ import annotations

import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from pydantic import BaseModel

from orchestrator.config import Settings
from orchestrator.spec import JobSpec

if TYPE_CHECKING:
    import aiohttp

    from orchestrator.transfer.attempts import RetryReporter
    from orchestrator.workflow.context import JobContext

Step = Callable[["JobContext"], Awaitable[None]]
"""Runs while the job is in one of the stage's states; ends with `ctx.finish_stage(...)`."""

Group = TypeVar("Group")
Client = TypeVar("Client")


class Requirement(Protocol):
    """Something a stage needs from the process before a job may enter it."""

    def refusal(self, settings: Settings) -> str | None:
        """Why this process cannot provide it, naming the flag, variable or key to set."""


@dataclass(frozen=True)
class Connection:
    """What a service is built on: the process's one HTTP session, the reporter of its API
    retries, and the stack that closes what was built when the process is done with it."""

    session: aiohttp.ClientSession
    on_retry: RetryReporter | None
    closing: AsyncExitStack


@dataclass(frozen=True)
class Demand:
    """A job about to run (new, or one to resume), before anything is sent: what it asks for
    and how far its photos are, for a service's probe to judge (a quota, say)."""

    spec: JobSpec
    photos: int
    """Its photos."""
    done: Mapping[str, int] = field(default_factory=dict)
    """How many of them each phase has done already ("tag": 3)."""

    def left(self, phase: str) -> int:
        """Photos the phase still has to do."""
        return self.photos - self.done.get(phase, 0)


Probe = Callable[[Client, Sequence[Demand]], Awaitable[str | None]]
"""Asks the built service, with a cheap authenticated call, whether it can serve these jobs
(the key, the account, the quota): why not, naming the setting to put right, or None. May
raise the client's errors; their message is the answer."""


@dataclass(frozen=True, eq=False)
class Service(Generic[Group, Client]):
    """A service stages talk to besides Imagen and the transfers, built once per process from
    one settings group, and found by stages in `Services` by this declaration."""

    name: str
    """What it is called in messages, e.g. "imgix"."""
    settings: Callable[[Settings], Group]
    """Its settings group."""
    missing: Callable[[Group], str | None]
    """Why it cannot be built from the group (naming what to set), or None."""
    build: Callable[[Group, Connection], Client]
    """Builds it over the connection; imports its client only when called, so that a stage's
    declaration loads no HTTP stack."""
    probe: Probe[Client] | None = None
    """Whether the settings are right and the account can serve the jobs, asked once per run
    before anything is sent (`service/preflight.py`); None: only their presence is checked."""

    def refusal(self, settings: Settings) -> str | None:
        """Why this process cannot build it."""
        return self.missing(self.settings(settings))


@dataclass(frozen=True)
class Program:
    """A program a stage runs on this machine, e.g. exiftool."""

    command: Callable[[Settings], str]
    """The command the settings name."""
    hint: str
    """What to do when it cannot be found (how to install it, which setting names it)."""

    def refusal(self, settings: Settings) -> str | None:
        """The hint, unless the command can be run."""
        return None if shutil.which(self.command(settings)) else self.hint


@dataclass(frozen=True)
class Labels:
    """The words the user sees for a stage's photos (progress, failures)."""

    done: str | None = None
    """A photo done for the phase, e.g. "uploaded"; None: "<phase> done"."""
    phase: str | None = None
    """The phase a failed photo failed in, e.g. "edit download"; None: the phase's name."""


class PhaseDetails(BaseModel, frozen=True):
    """The base of a stage's per-photo details: what its phase records beside output and md5."""


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
    requires: tuple[Requirement, ...] = ()
    """What a job asking for it needs of the process (its services, its programs), checked
    before anything is sent; its services are built by the wiring when configured."""
    labels: Labels = field(default_factory=Labels)
    """The words the user sees for its photos."""
    crash_points: tuple[str, ...] = ()
    """The `crash_point` names its step passes, for the crash tests to walk."""
    details: type[PhaseDetails] | None = None
    """The model of what its phase records per photo; None: nothing beyond output and md5."""
