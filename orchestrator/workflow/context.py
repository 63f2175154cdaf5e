"""What every stage of a job works with: the job snapshot, its lease, its spec and the services."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, cast

from orchestrator.crashpoints import crash_point
from orchestrator.errors import Refused, Transient
from orchestrator.imagen.models import EditOptions, ImageType
from orchestrator.progress import ProgressSink
from orchestrator.spec import JobSpec
from orchestrator.states import JobState, Move
from orchestrator.store.models import Job
from orchestrator.store.queries import Lease, Store
from orchestrator.workflow.pipeline import CHECKPOINT_CRASH_POINT, Pipeline
from orchestrator.workflow.stage import Client, Service, Stage

if TYPE_CHECKING:
    # The services' types only: a command that reads the pipeline (status) loads no HTTP stack.
    from orchestrator.imagen.client import ImagenClient
    from orchestrator.transfer.manager import Transfers


@dataclass(frozen=True, kw_only=True)
class EngineConfig:
    """How the engine paces itself."""

    poll_initial: float = 10.0
    """First wait between status polls, in seconds."""
    poll_max: float = 60.0
    """Longest wait between status polls, in seconds."""
    poll_growth: float = 1.5
    """Factor by which the wait between polls grows."""
    wait_deadline: float = 20 * 3600.0
    """Seconds an edit or export may take before the job fails."""
    link_batch_size: int = 200
    """File names per request for upload links."""
    workers: int = 8
    """Photos transferred at once over all the engine's jobs, each until its checkpoint."""
    lease_ttl: float = 60.0
    """Seconds a lease lasts without a heartbeat."""
    cancel_poll_seconds: float = 5.0
    """How often a driven job looks for `orchestrator cancel` (a one-column read)."""
    wait_inline: bool = True
    """Poll Imagen in this task while it works (`run`); else sleep in the database (daemon)."""
    callback_base: str | None = None
    """Public URL under which Imagen's callbacks reach us; none means polling only."""
    pause_retry_seconds: float = 60.0
    """When a paused job is tried again (daemon mode): Imagen down, disk full."""


class Services:
    """The outside world a job talks to, shared by every job of the process: Imagen and the
    transfers, which every job uses, and whichever services the pipeline's stages declare that
    this process is configured for (built by the wiring, found by their declaration).

    A process that runs one stage alone (`deliver`'s redelivery) builds only the services that
    stage uses: asking for Imagen or the transfers when they were not built is a mistake of the
    program, said at once.
    """

    __slots__ = ("_imagen", "_transfers", "built")

    def __init__(
        self,
        *,
        imagen: ImagenClient | None = None,
        transfers: Transfers | None = None,
        built: Mapping[Service[Any, Any], object] | None = None,
    ) -> None:
        self._imagen = imagen
        self._transfers = transfers
        self.built: Mapping[Service[Any, Any], object] = built or {}
        """Each declared service this process built."""

    @property
    def imagen(self) -> ImagenClient:
        """The Imagen client."""
        if self._imagen is None:
            raise RuntimeError("this process was built without the Imagen client")
        return self._imagen

    @property
    def transfers(self) -> Transfers:
        """Uploads and downloads to Imagen's storage."""
        if self._transfers is None:
            raise RuntimeError("this process was built without the transfers")
        return self._transfers

    def find(self, service: Service[Any, Client]) -> Client | None:
        """The service, or None when this process is not configured for it."""
        return cast("Client | None", self.built.get(service))


class JobFailed(Refused):
    """The job cannot go on without the user: it is marked failed with this reason.

    `back_to` is the state `orchestrator retry` returns it to (default: the state it failed in).
    """

    def __init__(self, reason: str, *, back_to: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.back_to = back_to


class JobPaused(Transient):
    """The job stops here for now with its state kept; running it again continues.

    For causes outside the job that the user can clear: Imagen unreachable, a full disk.
    """


class JobWaiting(Exception):
    """Imagen is still working: the job sleeps in the database until `delay` seconds pass."""

    def __init__(self, delay: float, *, deadline: datetime | None = None) -> None:
        super().__init__(f"waiting {delay:.0f} s for Imagen")
        self.delay = delay
        self.deadline = deadline
        """When the wait gives up: the daemon then lets its poller (within the shared poll
        budget) ask for the status, and drives the job again only at a callback, a finished
        status, or this deadline."""


@dataclass
class JobContext:
    """One job being driven: a fresh snapshot after every write, and the tools to drive it."""

    job: Job
    lease: Lease
    store: Store
    services: Services
    progress: ProgressSink
    config: EngineConfig
    pipeline: Pipeline
    photo_slots: asyncio.Semaphore
    """The engine's slots for photos in transfer (see Engine.photo_slots)."""
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def label(self) -> str:
        """The name the user sees for this job."""
        return self.job.name

    @property
    def state(self) -> str:
        """The job's current state."""
        return self.job.state

    @property
    def stage(self) -> Stage:
        """The stage the job is in."""
        return self.pipeline.stage_of(self.state)

    @cached_property
    def spec(self) -> JobSpec:
        """What the job was asked to do."""
        return self.pipeline.spec_model.from_stored(self.job.options)

    @property
    def image_type(self) -> ImageType:
        """Whether the job holds RAW files or JPEGs."""
        return ImageType(self.job.image_type)

    @property
    def project_uuid(self) -> str:
        """The Imagen project of the job (set once the project exists)."""
        if not self.job.project_uuid:
            raise RuntimeError(f"job {self.job.id} has no project yet in state {self.job.state}")
        return self.job.project_uuid

    def edit_options(self) -> EditOptions:
        """The edit request the job was created with."""
        return EditOptions(
            profile_key=self.job.profile_key, **self.spec.edit.model_dump(exclude_unset=True)
        )

    async def advance(self, new: str, message: str = "") -> None:
        """Commit the move to `new` from the current state, then refresh the snapshot."""
        await self.store.advance(self.lease, self._move(new), message=message)
        await self._checkpointed()

    async def finish_stage(self, message: str) -> None:
        """Commit that the current stage is done: the job moves on to the next it asks for."""
        await self.advance(self.pipeline.next_state(self.stage, self.spec), message)

    async def record_project(self, uuid: str, message: str) -> None:
        """Commit the job's Imagen project, finishing the project stage."""
        new = self.pipeline.next_state(self.stage, self.spec)
        await self.store.record_project(
            self.lease, self._move(new), project_uuid=uuid, message=message
        )
        await self._checkpointed()

    async def fail(self, reason: str, *, back_to: str | None = None) -> None:
        """Commit that the job failed; `retry` brings it back to `back_to` (default: here)."""
        await self.refresh()
        await self.store.fail(
            self.lease, self._move(JobState.FAILED), reason=reason, back_to=back_to or self.state
        )
        await self._checkpointed()

    async def cancelled(self) -> None:
        """Commit that the user cancelled the job."""
        await self.refresh()
        await self.advance(JobState.CANCELLED, "cancelled by the user")

    def _move(self, new: str) -> Move:
        return self.pipeline.transitions.move(self.state, new)

    async def _checkpointed(self) -> None:
        crash_point(CHECKPOINT_CRASH_POINT)
        await self.refresh()

    async def refresh(self) -> None:
        """Reload the job row."""
        self.job = await self.store.get_job(self.job.id)

    async def event(self, kind: str, message: str, **data: Any) -> None:
        """Add a line to the job's history."""
        await self.store.add_event(self.job.id, kind, message, data=data or None)

    def note(self, message: str, *, level: str = "info") -> None:
        """Tell the user something about this job."""
        self.progress.note(self.label, message, level=level)

    async def nap(self, seconds: float) -> None:
        """Sleep, unless something (a callback) wakes the job first."""
        self.wakeup.clear()
        try:
            await asyncio.wait_for(self.wakeup.wait(), timeout=seconds)
        except TimeoutError:
            return
